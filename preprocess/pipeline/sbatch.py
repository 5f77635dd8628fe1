"""``python -m preprocess.pipeline.sbatch [SBATCH_OPTION ...] -- CONFIG DATA SAVE_DIR INIT|- [OVERRIDE ...]``: one
training of an experiment (``launcher: slurm``) submitted to SLURM with run/slurm/train.sbatch, waited for.

Runs ``sbatch --wait --chdir=REPO --output=SAVE_DIR/slurm-%j.out [SBATCH_OPTION ...] run/slurm/train.sbatch CONFIG
DATA SAVE_DIR INIT OVERRIDE...`` and exits with its status (the job's: 0 when the training finished). The
script's own rules hold: one task per GPU, INIT only on a first launch, a requeued or resubmitted job resumes
from SAVE_DIR/checkpoint_last.pt; its environment knobs (KMLM_BATCH_SIZE, KMLM_RUN, ...) pass through.
"""
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "run" / "slurm" / "train.sbatch"


def sbatch_command(argv):
    if "--" not in argv:
        raise SystemExit("usage: python -m preprocess.pipeline.sbatch [SBATCH_OPTION ...] -- CONFIG DATA SAVE_DIR "
                         "INIT|- [OVERRIDE ...]")
    split = argv.index("--")
    options, training = argv[:split], argv[split + 1:]
    if len(training) < 4:
        raise SystemExit(f"expected CONFIG DATA SAVE_DIR INIT|- after --, got {training}")
    save_dir = Path(training[2])
    save_dir.mkdir(parents=True, exist_ok=True)
    return ["sbatch", "--wait", f"--chdir={REPO_ROOT}", f"--output={save_dir}/slurm-%j.out", *options, str(SCRIPT),
            *training]


def main(argv=None):
    command = sbatch_command(sys.argv[1:] if argv is None else argv)
    print("submitting:", " ".join(command), flush=True)
    return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main())
