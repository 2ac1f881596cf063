"""``python -m server``: the same as ``stagewire`` (``serve`` when no command is given)."""

from server.cli.main import main

if __name__ == "__main__":
    main()
