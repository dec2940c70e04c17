"""host_idle_pct: the host's idle time over the measured window, in percent of all CPUs' time, as will-it-scale's
runtest.py reads /proc/stat; in a run's throughput and a fork/exit run's lifecycle."""

from __future__ import annotations

from collections import namedtuple

from shmrss.host_meta import idle_pct

Times = namedtuple("Times", "user nice system idle iowait")


def test_idle_is_idle_over_every_field():
    assert idle_pct(Times(10, 0, 10, 80, 0), Times(40, 0, 20, 130, 10)) == 50.0  # 50 idle of 100
    assert idle_pct(Times(1, 1, 1, 1, 1), Times(1, 1, 1, 1, 1)) is None  # no time passed
    assert idle_pct(None, Times(1, 1, 1, 1, 1)) is None


def test_a_run_and_a_fork_exit_run_record_it(run_cli, tmp_path):
    code, res = run_cli(["run", "--design", "atomic", "--cpus", "1", "--duration", "0.5", "--no-reader"], tmp_path)
    assert code == 0 and 0.0 <= res["throughput"]["host_idle_pct"] <= 100.0
    code, res = run_cli(["run", "--workload", "fork_exit", "--lifecycle", "upstream", "--cpus", "1",
                         "--duration", "0.5"], tmp_path)
    assert code == 0 and 0.0 <= res["lifecycle"]["host_idle_pct"] <= 100.0
