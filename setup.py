from setuptools import find_packages, setup

setup(
    name="ser-hf",
    version="0.1.0",
    description="Speech emotion recognition in the wild with Hugging Face: the 'Lessons Learnt' training strategies as Trainer subclasses.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["ser_hf", "ser_hf.*"]),
    package_data={"ser_hf": ["metrics/*/*.py", "recipes/**/*.yaml"]},
    include_package_data=True,
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4",
        "transformers>=4.56",
        "datasets>=3.0",
        "accelerate>=1.0",
        "evaluate>=0.4.3",
        "peft>=0.13",
        "librosa>=0.10",
        "soundfile>=0.12",
        "soxr>=0.3",
        "scikit-learn>=1.3",
        "matplotlib>=3.7",
        "pyyaml>=6",
        "tqdm",
        "safetensors",
    ],
    extras_require={
        "test": ["pytest>=7"],
        "dev": ["pytest>=7", "ruff"],
    },
    entry_points={"console_scripts": ["ser-hf=ser_hf.cli:main"]},
)
