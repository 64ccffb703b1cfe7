"""mkbench: MobileKernelBench and MoKA for MNN's CPU backend on phones."""

__version__ = "0.1.0"
