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

    def play(self, steps, timeout: float = 60):
        """Runs each of `steps` (name -> function of nothing) in a thread of that name
        under the schedule; returns name -> what it returned, or the exception it
        raised."""
        outcome = {}

        def one(name):
            self.local.who = name
            try:
                outcome[name] = steps[name]()
            except Exception as err:   # handed back to the test, which judges it
                outcome[name] = err
            finally:
                self.finish()

        threads = [threading.Thread(target=one, args=(name,)) for name in steps]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout)
        if any(t.is_alive() for t in threads):
            raise RuntimeError(f"threads still running after {timeout} s: {self.schedule}")
        return outcome


def interleavings(counts):
    """Every order of the runs' steps (name -> how many): the distinct permutations of a
    multiset."""
    def build(left, prefix):
        if not any(left.values()):
            yield prefix
            return
        for who in sorted(left):
            if left[who]:
                left[who] -= 1
                yield from build(left, prefix + [who])
                left[who] += 1
    yield from build(dict(counts), [])


def turns_on_operations(schedule, monkeypatch) -> Turns:
    """Turns whose steps are the writes, renames and deletes the fake object store (and,
    with patch_local_faults, the local disk) counts: each takes the next turn."""
    from tests.helpers.fake_object_store import FakeObjectStore
    turns = Turns(schedule)
    operation = FakeObjectStore.operation.__func__

    def counted(cls, kind, path):
        turns.step()
        return operation(cls, kind, path)

    monkeypatch.setattr(FakeObjectStore, "operation", classmethod(counted))
    return turns
