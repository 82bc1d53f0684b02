"""The CLI called in-process by the tests: (exit code, stdout, stderr)."""
from neuroprobe.cli import main


def run_cli(argv, capsys):
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err
