"""``python -m torch_rnn.build_native``: compile the C++ loops now (the Makefile runs it after installing).

Prints the outcome; exits 0 either way, since torch_rnn works without them (the Python loops run instead),
unless ``--check`` asks for exit status 1 on failure. ``--verbose`` shows the compiler's output.
"""
import sys

from torch_rnn import native


def main(argv: list[str]) -> int:
    try:
        native.build(verbose="--verbose" in argv)
    except Exception as error:
        print(f"torch_rnn: the C++ loops could not be built; the Python loops will run instead:\n{error}")
        return 1 if "--check" in argv else 0
    print("torch_rnn: the C++ loops are built and load")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
