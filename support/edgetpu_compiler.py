"""Running `edgetpu_compiler` on a converted model: did the real compiler accept it?

The compiler runs on x86-64 Debian only, so it is optional: compile_for_edgetpu runs it when it is installed, keeps
its output, and counts a compile as good only when the exit code, the output file and the text all say so (the
compiler's exit code is not documented). It answers in a frozen dataclass of plain values (CompileResult), which
deploy_report.json holds as its fields.
"""
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from support.errors import UserError

# Coral's install steps for x86-64 Debian/Ubuntu, https://coral.ai/docs/edgetpu/compiler/ (apt repository and
# package name as given there).
INSTALL_HINT = (
    "edgetpu_compiler is not installed; on x86-64 Debian/Ubuntu add Coral's apt repository "
    "(curl https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo apt-key add -; "
    "echo 'deb https://packages.cloud.google.com/apt coral-edgetpu-stable main' | "
    "sudo tee /etc/apt/sources.list.d/coral-edgetpu.list), then "
    "sudo apt-get update && sudo apt-get install edgetpu-compiler (https://coral.ai/docs/edgetpu/compiler/)"
)



def find_compiler(explicit_path=None):
    """The edgetpu_compiler to use: an explicit path (which must exist and be executable), else PATH, else None.

    A wrong explicit path is the user's mistake and fails loudly; a compiler that is simply not installed is
    normal off x86-64 Debian, so the caller gets None and says why the compile step was skipped (INSTALL_HINT).
    """
    if explicit_path:
        path = Path(explicit_path).expanduser()
        if not path.is_file():
            raise UserError(f"edgetpu compiler not found: {explicit_path} (give the path to the edgetpu_compiler "
                            f"executable, or leave it out to use the one on PATH)")
        if not os.access(path, os.X_OK):
            raise UserError(f"edgetpu compiler is not executable: {explicit_path} (chmod +x it, or give another)")
        return str(path)
    return shutil.which("edgetpu_compiler")


_VERSION_RE = re.compile(r"Edge TPU Compiler version\s+(\S+)")


def _parse_version(text):
    match = _VERSION_RE.search(text or "")
    return match.group(1) if match else None


def compiler_version(compiler):
    """The compiler's version string (e.g. '16.0.384591198') from `edgetpu_compiler --version`, or None.

    Kept in the report because op support differs between compiler versions.
    """
    try:
        run = subprocess.run([str(compiler), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (run.stdout or "") + (run.stderr or "")
    return _parse_version(text) or (text.strip().splitlines()[0] if text.strip() else None)


# The compiler's summary, as printed by edgetpu_compiler 15/16 when part of a model stays on the CPU:
#   Number of operations that will run on Edge TPU: 264
#   Number of operations that will run on CPU: 3
# and the table that --show_operations prints (and the .log file always holds):
#   Operator                       Count      Status
#
#   CONV_2D                        11         Mapped to Edge TPU
#   QUANTIZE                       1          Operation is otherwise supported, but not mapped due to some ...
_ON_TPU_RE = re.compile(r"Number of operations that will run on Edge TPU:\s*(\d+)")
_ON_CPU_RE = re.compile(r"Number of operations that will run on CPU:\s*(\d+)")
_TABLE_HEADER_RE = re.compile(r"^\s*Operator\s+Count\s+Status\s*$")
_TABLE_ROW_RE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_]*)\s+(\d+)\s+(\S.*?)\s*$")
MAPPED = "Mapped to Edge TPU"


def parse_operation_table(text):
    """The rows of the compiler's 'Operator Count Status' table: [{op, count, status}], [] if there is none."""
    rows, in_table = [], False
    for line in (text or "").splitlines():
        if _TABLE_HEADER_RE.match(line):
            in_table, rows = True, []
            continue
        if not in_table or not line.strip():
            continue
        match = _TABLE_ROW_RE.match(line)
        if not match:
            break
        rows.append({"op": match.group(1), "count": int(match.group(2)), "status": match.group(3)})
    return rows


def parse_compiler_output(text, log_text=""):
    """Op counts from the compiler's text: (ops_on_edgetpu, ops_on_cpu, operations table).

    The summary lines win when present; a fully mapped model prints no summary, so the counts then come from
    the operation table (stdout with --show_operations, else the .log file). None where neither says.
    """
    operations = parse_operation_table(text) or parse_operation_table(log_text)
    on_tpu, on_cpu = _ON_TPU_RE.search(text or ""), _ON_CPU_RE.search(text or "")
    if on_tpu and on_cpu:
        return int(on_tpu.group(1)), int(on_cpu.group(1)), operations
    if operations:
        mapped = sum(row["count"] for row in operations if row["status"] == MAPPED)
        return mapped, sum(row["count"] for row in operations) - mapped, operations
    return None, None, operations


def _first_line_with(text, needle):
    """The line holding `needle` plus the next non-empty line, as one line ("Invalid model: x; Model not
    quantized"), or None."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if needle in line:
            return "; ".join(lines[i:i + 2])
    return None


def _last_line(text):
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _keep_output(log_path, command, returncode, stdout, stderr):
    """Append the compiler's own stdout/stderr to its .log (or write the log if it wrote none): the log is the
    one place a user looks when a compile fails, and the compiler's log has only the op table."""
    section = (f"\n# command: {' '.join(command)}\n# exit code: {returncode}\n"
               f"# stdout:\n{stdout or ''}\n# stderr:\n{stderr or ''}\n")
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(section)


@dataclass(frozen=True)
class CompileResult:
    """What edgetpu_compiler made of a model: ok, or the reason why not in one line; its output file (only when ok)
    and its log (kept for diagnosis), and the op counts and table it printed."""

    ok: bool
    reason: str | None
    returncode: int | None = None
    version: str | None = None
    output_path: str | None = None
    log_path: str | None = None
    ops_on_edgetpu: int | None = None
    ops_on_cpu: int | None = None
    operations: list[dict] = field(default_factory=list)  # the compiler's table: op, count, status
    seconds: float | None = None


def compile_for_edgetpu(tflite_path, out_dir, compiler, min_runtime_version=None, timeout_s=180):
    """Run edgetpu_compiler on a .tflite and say whether it really worked: a CompileResult.

    Writes <stem>_edgetpu.tflite and <stem>_edgetpu.log into out_dir (old ones of those two names are removed
    first, so a stale file never passes for a new result). Good only if the exit code is 0, the output file
    exists and the output has no "Invalid model".
    """
    tflite_path, out_dir = Path(tflite_path), Path(out_dir)
    if not tflite_path.is_file():
        raise UserError(f"no such TFLite model file: {tflite_path}")
    out_dir.mkdir(parents=True, exist_ok=True)
    output_path = out_dir / f"{tflite_path.stem}_edgetpu.tflite"
    log_path = out_dir / f"{tflite_path.stem}_edgetpu.log"
    for stale in (output_path, log_path):
        stale.unlink(missing_ok=True)

    command = [str(compiler), "--out_dir", str(out_dir), "--show_operations"]
    if min_runtime_version is not None:
        command += ["--min_runtime_version", str(min_runtime_version)]
    command.append(str(tflite_path))

    timed_out = False
    started = time.monotonic()
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        returncode, stdout, stderr = run.returncode, run.stdout, run.stderr
    except subprocess.TimeoutExpired as expired:
        returncode, timed_out = None, True
        stdout = expired.stdout.decode(errors="replace") if isinstance(expired.stdout, bytes) else expired.stdout
        stderr = expired.stderr.decode(errors="replace") if isinstance(expired.stderr, bytes) else expired.stderr
    except OSError as error:
        return CompileResult(ok=False, reason=f"could not run edgetpu_compiler {compiler}: {error}")
    seconds = time.monotonic() - started

    text = (stdout or "") + "\n" + (stderr or "")
    _keep_output(log_path, command, returncode, stdout, stderr)
    log_text = log_path.read_text(encoding="utf-8", errors="replace")
    on_tpu, on_cpu, operations = parse_compiler_output(text, log_text)
    invalid = _first_line_with(text, "Invalid model")
    if timed_out:
        reason = f"edgetpu_compiler did not finish within {timeout_s} s"
    elif returncode != 0:
        reason = f"edgetpu_compiler exited with code {returncode}: {_last_line(text) or 'no output'}"
    elif invalid:
        reason = f"edgetpu_compiler rejected the model: {invalid}"
    elif not output_path.is_file():
        reason = f"edgetpu_compiler exited 0 but wrote no {output_path.name} in {out_dir}"
    else:
        reason = None
    return CompileResult(ok=reason is None, reason=reason, returncode=returncode, version=_parse_version(text),
                         output_path=str(output_path) if reason is None else None, log_path=str(log_path),
                         ops_on_edgetpu=on_tpu, ops_on_cpu=on_cpu, operations=operations, seconds=round(seconds, 3))
