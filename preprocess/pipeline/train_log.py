"""fairseq's training log as the pipeline shows it: one table row per logged update and per validation."""
import re


class TrainingProgress:
    """Echo of fairseq's log: one table row per logged update and per validation, and any error line."""

    FIELDS = ("loss", "plain_loss", "knowledge_loss", "reasoning_loss")

    def __init__(self):
        self.header_shown = False

    @staticmethod
    def field(line, name):
        """The number after "name=" or "name " (not after "plain_name=")."""
        match = re.search(rf"[ ,|]{name}[= ]([0-9.]+)", line)
        return match.group(1) if match else "-"

    def __call__(self, line):
        if re.match(r"epoch \d+: .*num_updates=", line):
            row = "%8s" % self.field(line, "num_updates")
        elif "valid on" in line:
            row = "   valid"
        elif "Traceback" in line or "Error" in line:
            return line.rstrip("\n")
        else:
            return None
        row += "".join(" %14s" % self.field(line, name) for name in self.FIELDS)
        if row.startswith("   valid"):
            row += "   (update %s)" % self.field(line, "num_updates")
        if not self.header_shown:
            self.header_shown = True
            row = "%8s" % "update" + "".join(" %14s" % name for name in self.FIELDS) + "\n" + row
        return row
