"""Paper lab (issue 6): work in progress."""

from __future__ import annotations

import streamlit as st


def render() -> None:
    st.title("Paper lab")


if __name__ == "__main__":
    render()
