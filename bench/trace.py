#!/usr/bin/env python3
"""trace.py - a seeded synthetic workload for the cache replay (issue 14 item 1,
SPEC §13), Python 3 standard library only.

    python3 bench/trace.py [--seed 1] [--users 200] [--hours 6] [--zipf 1.1]
        [--pool 500] [--revisit 0.3] [--rate 1.0] > trace.jsonl
    python3 bench/trace.py --list-users [--seed 1] [--users 200]   # "INDEX PLAN" lines

Prints one JSON object a line, in time order:
    {"t": SECONDS_FROM_START, "user": INDEX, "plan": NAME, "task": TASK,
     "prompt": TEXT, "tier": "session"|"content",
     "next": {"task", "prompt", "tier"}}   (the session's next step, but the last)
and a one-line summary on stderr.  The same arguments give byte-identical
output (everything is drawn from one random.Random(seed); prompt texts from
their own string-seeded generators).

Model
  users     --users, plans in the fixed mix PLAN_MIX (exact counts by largest
            remainder, then shuffled); index 0..N-1.
  sessions  each user starts sessions as a Poisson process over --hours at the
            plan's rate (SESSIONS_PER_HOUR x --rate: paying users come more
            often).
  tasks     a session walks STEPS: extraction, then cv_draft, cover_letter,
            interview_notes, each next step with CONTINUE[i] probability, after
            1 + Exp(mean GAP_MEAN_MIN) simulated minutes; steps past the end
            of the trace are dropped.
  prompts   a session is about one job posting: its index is drawn from a
            Zipf(--zipf) distribution over --pool postings, so popular
            postings recur across users and sessions; task T's prompt is
            entry <job> of T's own pool (so every task's prompts are Zipf
            distributed over a pool of --pool prompts).  With probability
            --revisit a user's later session returns to one of that user's
            earlier postings instead (a user iterating on an application).
            The cache is per user (SPEC §4): only a user's own repeats can hit.
  tiers     TIER_OF: extraction and interview_notes "content" (shared
            wording), cv_draft and cover_letter "session".
"""
import argparse
import bisect
import itertools
import json
import os
import random
import sys

PLAN_MIX = [("freemium", 0.50), ("payg", 0.15), ("pro_monthly", 0.20),
            ("pro_annual", 0.10), ("enterprise", 0.05)]
SESSIONS_PER_HOUR = {"freemium": 0.3, "payg": 0.5, "pro_monthly": 0.8,
                     "pro_annual": 1.0, "enterprise": 2.0}
STEPS = ["extraction", "cv_draft", "cover_letter", "interview_notes"]
CONTINUE = [0.8, 0.6, 0.4]        # P(step i+1 | step i)
GAP_MEAN_MIN = 3.0                 # minutes between steps: 1 + Exp(mean 3)
TIER_OF = {"extraction": "content", "cv_draft": "session",
           "cover_letter": "session", "interview_notes": "content"}
PROMPT_CHARS = {"extraction": (1200, 3000), "cv_draft": (800, 2000),
                "cover_letter": (600, 1500), "interview_notes": (600, 1500)}
LEAD = {"extraction": "Extract the structured requirements of job posting",
        "cv_draft": "Draft a CV tailored to job posting",
        "cover_letter": "Write a cover letter for job posting",
        "interview_notes": "Prepare interview notes for job posting"}
WORDS = ("senior engineer platform team remote hybrid python rust kubernetes "
         "payments customers growth analytics ownership mentoring roadmap "
         "stakeholders delivery cloud security latency reliability design "
         "experience years degree startup scale product backend frontend data "
         "pipeline testing observability on-call agile collaboration budget "
         "healthcare retail logistics salary benefits equity relocation visa "
         "leadership communication english german deadline contract").split()


def plan_counts(n):
    """Exact plan counts for n users (largest remainder)."""
    raw = [(name, share * n) for name, share in PLAN_MIX]
    counts = {name: int(x) for name, x in raw}
    left = n - sum(counts.values())
    for name, x in sorted(raw, key=lambda p: -(p[1] - int(p[1])))[:left]:
        counts[name] += 1
    return counts


def user_plans(rng, n):
    """The plan of each user index: the first draws of the trace's generator."""
    counts = plan_counts(n)
    plans = [name for name, _ in PLAN_MIX for _ in range(counts[name])]
    rng.shuffle(plans)
    return plans


class Zipf:
    """Draws 0..n-1 with P(k) proportional to (k + 1) ** -s."""

    def __init__(self, n, s):
        self.cum = list(itertools.accumulate((k + 1) ** -s for k in range(n)))

    def draw(self, rng):
        return min(bisect.bisect_right(self.cum, rng.random() * self.cum[-1]), len(self.cum) - 1)


_prompts = {}


def prompt_of(task, job):
    """Entry `job` of task's pool: fixed text, independent of the seed."""
    key = (task, job)
    if key not in _prompts:
        r = random.Random(f"quotacache-trace:{task}:{job}")
        lo, hi = PROMPT_CHARS[task]
        want = r.randint(lo, hi)
        parts = [f"{LEAD[task]} #{job}:"]
        size = len(parts[0])
        while size < want:
            w = r.choice(WORDS)
            parts.append(w)
            size += len(w) + 1
        _prompts[key] = " ".join(parts)
    return _prompts[key]


def generate(a):
    rng = random.Random(a.seed)
    plans = user_plans(rng, a.users)
    counts = plan_counts(a.users)
    zipf = Zipf(a.pool, a.zipf)
    end = a.hours * 3600.0
    events, sessions = [], 0
    for user, plan in enumerate(plans):
        rate = SESSIONS_PER_HOUR[plan] * a.rate / 3600.0   # sessions per second
        seen = []                                          # postings this user worked on
        t = rng.expovariate(rate) if rate > 0 else end
        while t < end:
            sessions += 1
            if seen and rng.random() < a.revisit:
                job = rng.choice(seen)
            else:
                job = zipf.draw(rng)
                seen.append(job)
            st = t
            for i, task in enumerate(STEPS):
                if i and (rng.random() >= CONTINUE[i - 1]):
                    break
                if i:
                    st += 60.0 * (1.0 + rng.expovariate(1.0 / GAP_MEAN_MIN))
                if st >= end:
                    break
                events.append((round(st, 3), user, i, plan, task, job))
            t += rng.expovariate(rate)
    events.sort()
    return events, sessions, counts


def main():
    ap = argparse.ArgumentParser(description="seeded synthetic trace for bench/replay.py (JSON lines on stdout)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent s of the posting popularity")
    ap.add_argument("--pool", type=int, default=500, help="prompts per task (job postings)")
    ap.add_argument("--revisit", type=float, default=0.3,
                    help="probability that a session returns to one of the user's earlier postings")
    ap.add_argument("--rate", type=float, default=1.0, help="multiplier of the per-plan session rates")
    ap.add_argument("--list-users", action="store_true", help='print "INDEX PLAN" for every user instead')
    a = ap.parse_args()
    if a.users < 1 or a.hours <= 0 or a.pool < 1 or a.zipf < 0 or not 0 <= a.revisit <= 1 or a.rate < 0:
        ap.error("need --users >= 1, --hours > 0, --pool >= 1, --zipf >= 0, 0 <= --revisit <= 1, --rate >= 0")
    out = sys.stdout
    if a.list_users:
        for user, plan in enumerate(user_plans(random.Random(a.seed), a.users)):
            out.write(f"{user} {plan}\n")
        return
    events, sessions, counts = generate(a)
    for t, user, i, plan, task, job in events:
        ev = {"t": t, "user": user, "plan": plan, "task": task, "prompt": prompt_of(task, job),
              "tier": TIER_OF[task]}
        if i + 1 < len(STEPS):   # what the app would ask next for this posting (a hint; the user may not)
            nxt = STEPS[i + 1]
            ev["next"] = {"task": nxt, "prompt": prompt_of(nxt, job), "tier": TIER_OF[nxt]}
        out.write(json.dumps(ev) + "\n")
    mix = " ".join(f"{name}={counts[name]}" for name, _ in PLAN_MIX)
    print(f"trace: seed {a.seed}, {a.users} users ({mix}), {a.hours:g} h, Zipf s = {a.zipf:g} over {a.pool} "
          f"prompts a task, revisit {a.revisit:g}, rate x{a.rate:g}: {sessions} sessions, {len(events)} events",
          file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:        # e.g. | head: quiet, as the Python docs suggest
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
