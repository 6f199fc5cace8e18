"""``python -m htmap``: the htmap command."""
from .cli import main

if __name__ == "__main__":
    main()
