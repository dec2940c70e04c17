"""shmrss: emulate the Linux mm->rss_stat counter designs on real hardware and compare them."""

__version__ = "0.1.0"
