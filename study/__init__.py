"""The study's parts (ablation.py): its runs in this process, in workers or on Ray; its statistics; the
excitation's role at inference. They use the model from senet_lenet.py."""
