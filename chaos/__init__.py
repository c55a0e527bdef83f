"""`make chaos`: a bounded, scripted fault run against the project's own stack on loopback, and a checker
that reads what happened and says which crash-safety invariants held.

- `stack.py` starts the parts it can break: one Redis (append-only file on), two web processes, two Celery
  workers and beat, on a SQLite file of the run (or DATABASE_URL given with --database-url);
- `node.py` is one simulated node per process (so a node can be SIGKILLed or SIGSTOPped), writing every
  frame it gets to the run's history;
- `client.py` submits jobs and follows each to its end, writing the client's side of the history;
- `faults.py` is the schedule of faults and the code that applies them;
- `sampler.py` reads Redis every half second (capacity, leader epoch) while the run lasts;
- `checker.py` turns the history, the samples, Redis and the database into the invariant table.

Django-free except the stack's set-up and the checker's database read, which run in the main process.
"""
