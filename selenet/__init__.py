"""What the three scripts share: settings, data, the command line, errors, the run folder and what it owns,
files, locks, signals, checkpoints, the machine, figures, heatmaps and TensorBoard logs. Imports no script."""
