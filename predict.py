"""Classify sentences with a trained checkpoint.

    python predict.py CHECKPOINT "a sentence" "another one"
    python predict.py CHECKPOINT --file sentences.txt --json
"""
from lightning_module.predict_cli import main

if __name__ == "__main__":
    main()
