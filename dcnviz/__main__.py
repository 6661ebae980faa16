from dcnviz.cli import main

raise SystemExit(main())
