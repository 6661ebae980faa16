"""Shared test helpers (no tests here): tiny demo models and AppTest drivers (`app`), issue 11's hostile
inputs (`hostile`), the real-browser server (`browser`), stand-in background jobs (`jobs`)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout
TEST_FIXTURES = ROOT / "tests" / "fixtures"  # data/ (MovieLens-format files), peers/ (peer libraries' files)
PEERS = TEST_FIXTURES / "peers"  # peer libraries' model files (scripts/make_peer_fixtures.py; see its README)
