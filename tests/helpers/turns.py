"""Threads that take their steps in the order of a schedule: a test plays two or three
runs at once, each in a thread, and makes every interleaving it wants happen."""

import threading


class Turns:
    """Lets the runs' threads take their writes, renames and deletes in the order of a
    schedule ("A", "B", ...); a run whose turns are used up, or that has ended, no
    longer holds the others back."""

    def __init__(self, schedule):
        self.schedule, self.done = list(schedule), set()
        self.cond = threading.Condition()
        self.local = threading.local()

    def step(self):
        who = getattr(self.local, "who", None)
        if who is None:
            return
        with self.cond:
            while self.schedule and self.schedule[0] != who:
                if self.schedule[0] in self.done:
                    self.schedule.pop(0)
                    continue
                self.cond.wait()
            if self.schedule:
                self.schedule.pop(0)
            self.cond.notify_all()

    def finish(self):
        with self.cond:
            self.done.add(self.local.who)
            self.cond.notify_all()
