"""What a run writes after each epoch, so that a stop loses at most that epoch: its checkpoint (for
--resume), its TensorBoard logs, and run.json and history.csv saying how far it got."""

from selenet import runs
from selenet.checkpoints import Checkpoints
from selenet.tensorboard_logs import EpochLogs


class EpochFiles:
    """The per-epoch files of one run folder (a Manifest) for one model, optimizer and data."""

    def __init__(self, folder, model, optimizer, settings, data):
        self.folder, self.model, self.settings = folder, model, settings
        self.train_images = len(data[0][1])
        self.checkpoints = Checkpoints(folder.folder, model, optimizer, settings, folder)
        self.logs = EpochLogs(folder, data[1][1], settings.gate, settings.gate_scale)

    def restore(self, warn):
        """The history up to the newest usable checkpoint, whose state is loaded (UsageError if none is)."""
        return self.checkpoints.restore_newest(warn)

    def save(self, history, excitations):
        """After each epoch: the logs of history[-1] and the test set's excitations, the checkpoint, run.json."""
        self.logs.write(history[-1], dict(zip(self.settings.se_blocks, excitations, strict=True)))
        self.checkpoints.save(history)
        if len(history) < self.settings.epochs:  # the last epoch's run.json comes with the finished files
            run = runs.run_record(self.model, self.settings, history, train_images=self.train_images)
            runs.save_progress(run, self.folder)

    def close(self):
        self.logs.close()
