"""mkbench: MobileKernelBench and MoKA for MNN's CPU backend on phones.

The map of the package (its layers, and one candidate's path through them) is ARCHITECTURE.md
at the top of the repository.
"""

__version__ = "0.1.0"
