"""The demo task: turn a short customer-support message into a strict JSON triage object.

    {"category": "billing", "priority": "high", "product": "router"}

A base chat model answers in prose or invents keys; a small LoRA fine-tune learns the exact schema, the
allowed values and the cues that decide them. Deterministic for a seed, with real variety: many templates
per category, product aliases, priority cues, greetings, order numbers, signatures and typos.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SYSTEM_PROMPT = (
    "You triage customer support messages. Reply with only a JSON object with the keys "
    '"category" (billing, technical, shipping, account, refund), "priority" (low, medium, high) '
    'and "product" (router, smartwatch, headphones, laptop, camera, speaker, tablet, printer).'
)

PRODUCTS = {
    "router": ["router", "wifi router", "AX3000 router", "mesh router"],
    "smartwatch": ["smartwatch", "smart watch", "fitness watch", "Pulse watch"],
    "headphones": ["headphones", "wireless headphones", "earbuds", "noise-cancelling headset"],
    "laptop": ["laptop", "notebook", "ultrabook", "15-inch laptop"],
    "camera": ["camera", "action camera", "security camera", "mirrorless camera"],
    "speaker": ["speaker", "bluetooth speaker", "smart speaker", "soundbar"],
    "tablet": ["tablet", "10-inch tablet", "drawing tablet", "kids tablet"],
    "printer": ["printer", "laser printer", "inkjet printer", "photo printer"],
}

TEMPLATES = {
    "billing": [
        "I was charged twice for my {p} this month.",
        "My invoice for the {p} shows the wrong amount.",
        "Why did my card get billed again for the {p}?",
        "The {p} subscription fee went up without notice.",
        "I need a corrected invoice for the {p} I bought.",
        "There is an unknown charge related to my {p} order.",
    ],
    "technical": [
        "My {p} keeps disconnecting every few minutes.",
        "The {p} will not turn on after the latest update.",
        "The {p} freezes whenever I open the settings.",
        "My {p} shows an error light and stops working.",
        "The firmware update bricked my {p}.",
        "The battery on my {p} drains in an hour.",
    ],
    "shipping": [
        "My {p} order still has not arrived.",
        "The tracking number for my {p} does not work.",
        "The {p} was delivered to the wrong address.",
        "The box with my {p} arrived crushed.",
        "When will my {p} be shipped?",
        "The courier says the {p} package is lost.",
    ],
    "account": [
        "I cannot log in to the app that controls my {p}.",
        "Please change the email on the account linked to my {p}.",
        "My password reset link for the {p} app never arrives.",
        "Someone else registered my {p} serial to their account.",
        "How do I delete the account I made for my {p}?",
        "Two-factor login for my {p} account is locked.",
    ],
    "refund": [
        "I want to return the {p} and get my money back.",
        "Please refund the {p}, it is not what I ordered.",
        "How long does a refund for the {p} take?",
        "I sent the {p} back two weeks ago and have no refund yet.",
        "Can I get a refund for the {p} I never opened?",
        "I cancelled the {p} order, where is my refund?",
    ],
}

PRIORITY_CUES = {
    "high": ["This is urgent.", "I need this fixed today!", "Please help ASAP.", "My business depends on it.",
             "This is the third time, I am furious."],
    "medium": ["Please look into it this week.", "I'd appreciate a reply soon.", "Can someone check?",
               "Let me know what to do."],
    "low": ["No rush.", "Whenever you have time.", "Just wondering.", "Not a big deal, just curious."],
}

GREETINGS = ["", "Hi,", "Hello,", "Hey team,", "Good morning,", "Dear support,"]
SIGNOFFS = ["", "Thanks.", "Thank you!", "Regards, Sam", "Cheers", "Best, Priya", "- Tom"]


def make_ticket(rng: random.Random) -> dict[str, object]:
    category = rng.choice(list(TEMPLATES))
    product = rng.choice(list(PRODUCTS))
    priority = rng.choices(["high", "medium", "low"], weights=[3, 4, 3])[0]
    body = rng.choice(TEMPLATES[category]).format(p=rng.choice(PRODUCTS[product]))
    parts = [rng.choice(GREETINGS), body]
    if rng.random() < 0.4:
        parts.append(f"Order #{rng.randint(10000, 99999)}.")
    cue = rng.choice(PRIORITY_CUES[priority])
    parts.insert(rng.choice([1, len(parts)]), cue)
    parts.append(rng.choice(SIGNOFFS))
    message = " ".join(p for p in parts if p)
    if rng.random() < 0.15:
        message = _typo(message, rng)
    if rng.random() < 0.2:
        message = message.lower()
    answer = {"category": category, "priority": priority, "product": product}
    return {"message": message, "answer": answer}


def _typo(text: str, rng: random.Random) -> str:
    i = rng.randrange(1, max(2, len(text) - 1))
    return text[:i] + text[i + 1:]


def generate(n: int = 480, seed: int = 7) -> list[dict[str, object]]:
    """`n` distinct tickets as OpenAI `messages` rows (system, user, assistant JSON)."""
    rng = random.Random(seed)
    rows, seen = [], set()
    while len(rows) < n:
        ticket = make_ticket(rng)
        if ticket["message"] in seen:
            continue
        seen.add(ticket["message"])
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": ticket["message"]},
                    {"role": "assistant", "content": json.dumps(ticket["answer"])},
                ]
            }
        )
    return rows


def write(path: str | Path, n: int = 480, seed: int = 7) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in generate(n, seed):
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


if __name__ == "__main__":
    import sys

    print(write(sys.argv[1] if len(sys.argv) > 1 else "examples/data/support_tickets.jsonl"))
