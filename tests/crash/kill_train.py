#!/usr/bin/env python3
"""Kills `peftc train --save-every` at random moments and at every commit point of a directory
write (the PEFTC_CRASH_AT hook of runtime/atomic_dir.c), over an older adapter in the same
directory, and checks what survives:
  - every checkpoint-N is byte-identical to the uninterrupted run's checkpoint-N or to the older
    run's checkpoint-N it replaces;
  - the output directory holds the older adapter or the new one, whole (never a mix);
  - the next run (resumed from the newest surviving checkpoint) removes the crashed run's
    temporaries and ends with that checkpoint's run's final adapter, bit for bit.
Usage: kill_train.py PEFTC WORKDIR [--random N] [--seed S]"""
import argparse, os, random, shutil, signal, subprocess, sys, time

TRAIN = ["train", "--steps", "8", "--batch", "2", "--seq", "16", "--save-every", "2",
         "--eval-every", "4", "--eval-batches", "1", "--quiet"]
ADAPTER = ["adapter_config.json", "adapter_model.safetensors"]
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL:", msg, flush=True)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def files(d):
    return sorted(e for e in os.listdir(d) if not e.startswith(".") and os.path.isfile(os.path.join(d, e)))


def same_dir(a, b, names):
    return all(os.path.exists(os.path.join(a, n)) and read(os.path.join(a, n)) == read(os.path.join(b, n))
               for n in names)


def temporaries(root):
    found = []
    for d, dirs, fs in os.walk(root):
        found += [os.path.join(d, e) for e in dirs + fs if "peftc-" in e or ".tmp." in e]
    return found


def which(d, ref, old):
    """'new' or 'old' when d equals ref's or old's same-named directory file for file, else None"""
    for tag, r in (("new", ref), ("old", old)):
        if r and os.path.isdir(r) and files(d) == files(r) and same_dir(d, r, files(r)):
            return tag


def check_survivors(label, out, ref, old):
    if not os.path.isdir(out):
        fail(f"{label}: {out} is gone (the older adapter was there)")
        return
    cks = []
    for e in sorted(os.listdir(out)):
        d = os.path.join(out, e)
        if e.startswith("checkpoint-") and os.path.isdir(d):
            tag = which(d, os.path.join(ref, e), os.path.join(old, e))
            if not tag:
                fail(f"{label}: {d} is neither run's {e}, whole: {files(d)}")
            cks.append(f"{e} {tag}")
    tag = "old" if same_dir(out, old, ADAPTER) else "new" if same_dir(out, ref, ADAPTER) else None
    if not tag:
        fail(f"{label}: {out} holds neither the older adapter nor the new one whole")
    return f"the {tag} adapter; " + ", ".join(cks)


def newest_checkpoint(out):
    cks = [e for e in os.listdir(out) if e.startswith("checkpoint-") and os.path.isdir(os.path.join(out, e))]
    return os.path.join(out, max(cks, key=lambda e: int(e.split("-")[1]))) if cks else None


def run(peftc, args, env=None):
    return subprocess.run([peftc] + args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_and_check(label, peftc, work, out, ref, old):
    ck = newest_checkpoint(out)
    if ck and which(ck, os.path.join(ref, os.path.basename(ck)), None) != "new":
        ref = old  # the older run's checkpoint survived: resuming continues that run
    r = run(peftc, TRAIN + (["--resume", ck] if ck else []) + ["--out", out])
    if r.returncode:
        fail(f"{label}: the next run (resume {ck}) failed: {r.stderr.strip()}")
        return
    if not same_dir(out, ref, ADAPTER):
        fail(f"{label}: resumed from {ck}, the final adapter differs from that run's")
    left = temporaries(work)
    if left:
        fail(f"{label}: temporaries left after the next run: {left}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("peftc")
    ap.add_argument("work")
    ap.add_argument("--random", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    ref, old = os.path.join(a.work, "ref"), os.path.join(a.work, "old")
    t0 = time.time()
    for out, extra in ((ref, []), (old, ["--seed", "7"])):
        r = run(a.peftc, TRAIN + extra + ["--out", out])
        if r.returncode:
            sys.exit(f"reference run failed: {r.stderr}")
    span = (time.time() - t0) / 2

    def fresh(name):
        work = os.path.join(a.work, name)
        out = os.path.join(work, "out")
        os.makedirs(work)
        os.makedirs(out)
        for n in ADAPTER:  # an older adapter (and its checkpoint-4) sits where the new one goes
            shutil.copy(os.path.join(old, n), out)
        shutil.copytree(os.path.join(old, "checkpoint-4"), os.path.join(out, "checkpoint-4"))
        return work, out

    outcomes = {}
    for point in ("staged", "swapped", "carried"):
        for target in ("checkpoint-4", "out"):
            label = f"crash at {point}:{target}"
            work, out = fresh(f"{point}-{target}")
            env = dict(os.environ, PEFTC_CRASH_AT=f"{point}:{target}")
            r = run(a.peftc, TRAIN + ["--out", out], env)
            if r.returncode != -signal.SIGKILL:
                fail(f"{label}: the run was not killed there (exit {r.returncode}): {r.stderr.strip()}")
            outcomes[label] = check_survivors(label, out, ref, old)
            finish_and_check(label, a.peftc, work, out, ref, old)
    for i in range(a.random):
        label = f"random kill {i}"
        work, out = fresh(f"random-{i}")
        p = subprocess.Popen([a.peftc] + TRAIN + ["--out", out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        delay = rng.uniform(0, span * 1.2)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        outcomes[f"{label} after {delay:.2f}s ({'killed' if p.returncode == -9 else 'finished'})"] = \
            check_survivors(label, out, ref, old)
        finish_and_check(label, a.peftc, work, out, ref, old)
    for k, v in outcomes.items():
        print(f"{k}: {v}")
    if failures:
        sys.exit(f"{len(failures)} failure(s)")
    print(f"all {len(outcomes)} crash runs left whole directories that resumed bit-identically")


if __name__ == "__main__":
    main()
