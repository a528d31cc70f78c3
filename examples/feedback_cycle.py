"""One full deployment cycle on a finished run, end to end, with the official `openai` client:

serve the run -> users ask and rate/correct answers -> export the feedback -> train the next round from the
run's adapter (model.init_from_run) -> drift report. Every step is a tuneforge CLI call a user would type.

    .venv/bin/python examples/feedback_cycle.py runs/support-json-<timestamp>
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from openai import OpenAI

from tuneforge.demo.support_tickets import SYSTEM_PROMPT

TUNEFORGE = str(Path(sys.executable).with_name("tuneforge"))

PORT = 8765
QUESTIONS = [
    "My laptop battery dies in an hour, please help ASAP.",
    "Hi, I was billed twice for my printer. No rush.",
    "Where is my camera order? Let me know what to do.",
    "I want a refund for the speaker I never opened. Just wondering.",
    "Cannot log in to the tablet app. This is urgent.",
    "The router box arrived crushed. Can someone check?",
    "My earbuds keep disconnecting. Whenever you have time.",
    "Please change the email on my smartwatch account. I need this fixed today!",
    "Refund for my notebook is two weeks late. My business depends on it.",
    "Tracking number for my soundbar does not work. Not a big deal, just curious.",
    "The firmware update bricked my security camera. Please help ASAP.",
    "Why did my card get billed again for the drawing tablet? Please look into it this week.",
]


def tf(*args: str) -> None:
    print("$ tuneforge", " ".join(args), flush=True)
    subprocess.run([TUNEFORGE, *args], check=True)


def main(run_dir: str) -> None:
    work = Path(run_dir) / "cycle"
    work.mkdir(exist_ok=True)
    db = work / "feedback.sqlite"
    server = subprocess.Popen([TUNEFORGE, "serve", run_dir, "--port", str(PORT),
                               "--db", str(db)])
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{PORT}/v1", api_key="local")
        for _ in range(120):  # wait for the model to load
            try:
                models = [m.id for m in client.models.list().data]
                break
            except Exception:
                time.sleep(1)
        else:
            raise SystemExit("server did not start")
        model = next(m for m in models if m != "smollm2-135m-instruct")
        print("serving", models)
        for i, question in enumerate(QUESTIONS):
            reply = client.chat.completions.create(
                model=model, max_tokens=40,
                messages=[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}])
            answer = reply.choices[0].message.content
            print(f"{question!r} -> {answer}")
            rating = 1 if i % 3 else -1
            body = {"response_id": reply.id, "rating": rating}
            if rating < 0:
                body["correction"] = answer.replace('"low"', '"high"').replace('"medium"', '"high"')
            client.post("/feedback", body=body, cast_to=object)
    finally:
        server.terminate()
        server.wait(timeout=30)
    tf("feedback", "export", "--db", str(db), "--out", str(work / "round1"), "--run", run_dir)
    print((work / "round1" / "next_recipe.yaml").read_text())
    tf("train", str(work / "round1" / "next_recipe.yaml"), "hparams.epochs=1", "data.min_examples=5",
       "data.val_ratio=0.0", "output_dir=" + str(work / "runs"))
    tf("drift", "--run", run_dir, "--db", str(db), "--out", str(work / "drift.json"))
    print(json.dumps(json.loads((work / "drift.json").read_text()), indent=1)[:1500])


if __name__ == "__main__":
    main(sys.argv[1])
