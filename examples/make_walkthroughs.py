"""Writes the data of two walkthroughs (deterministic; run again after editing):

examples/ticket-labels.openai.jsonl  support tickets -> exactly one label
examples/order-json.openai.jsonl     order messages -> one JSON object

Their unseen test prompts live in examples/walkthrough.py, apart from the training data."""

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
TICKET_SYSTEM = ("Classify the customer's support ticket. Answer with exactly one label: "
                 "billing, shipping, technical or account.")
TICKETS = {
    "billing": [
        "I was charged twice for my last order.", "Why is there an extra fee on my invoice?",
        "My card was billed but I cancelled the subscription.", "Can I get a copy of my receipt?",
        "The price I paid is higher than the one on the website.",
        "I want to change the card you charge every month.",
        "You took money from my account without asking.", "How do I pay by bank transfer?",
        "My discount code was not applied to the total.", "Please explain this charge of 12 euros.",
        "I need an invoice with my company's VAT number.", "Is the yearly plan cheaper than monthly?",
    ],
    "shipping": [
        "My parcel has not arrived yet.", "The tracking number does not work.",
        "Can you deliver to a different address?", "The box arrived crushed and wet.",
        "How long does delivery to Canada take?", "The courier left my package at the wrong door.",
        "Do you ship on weekends?", "My order says delivered but I never got it.",
        "Can I pick up the order from your warehouse?", "Why is shipping so expensive to Norway?",
        "Half of my order is missing from the box.", "When will my order be sent out?",
    ],
    "technical": [
        "The app crashes when I open the settings page.", "I get error 500 when I upload a photo.",
        "The website is very slow on my phone.", "My device does not connect to Wi-Fi anymore.",
        "The firmware update failed halfway.", "Notifications stopped working after the update.",
        "The screen stays black after I turn it on.", "Bluetooth pairing keeps failing.",
        "The export button does nothing.", "The battery drains in two hours.",
        "I see a blank page after logging in.", "The sync between my laptop and phone is broken.",
    ],
    "account": [
        "I forgot my password and the reset email never comes.", "How do I change my username?",
        "Please delete my account and all my data.", "I cannot log in with my Google account.",
        "Someone else is using my account.", "How do I add a second user to my account?",
        "I want to change the email address on my profile.", "My account was locked after three tries.",
        "Can I merge my two accounts into one?", "How do I turn on two-factor login?",
        "I never signed up but I get your emails.", "Where can I download all my account data?",
    ],
}
ORDER_SYSTEM = ('Turn the customer\'s order into JSON with exactly these keys: "name" '
                '(string), "item" (string) and "quantity" (integer). Answer with the JSON only.')
ORDERS = [
    ("Maria", 3, "blue mugs", "Hi, this is Maria, I'd like {q} {i} please."),
    ("Tom", 1, "bike lamp", "Tom here. One {i} for me, thanks."),
    ("Aiko", 12, "pencils", "Could I order {q} {i}? - Aiko"),
    ("Lars", 2, "wool socks", "Lars speaking: please send {q} pairs of {i}."),
    ("Fatima", 5, "notebooks", "Hello! Fatima would like {q} {i}."),
    ("Pedro", 4, "coffee filters", "I need {q} packs of {i}. Pedro"),
    ("Chen", 1, "desk chair", "Chen here, ordering a single {i}."),
    ("Olga", 6, "wine glasses", "{q} {i}, please. Thanks, Olga"),
    ("Sam", 10, "AA batteries", "Sam: {q} {i} asap!"),
    ("Nina", 2, "yoga mats", "Hi, I am Nina and I want {q} {i}."),
    ("Ravi", 3, "tea towels", "Please put me down for {q} {i}. Regards, Ravi"),
    ("Eva", 8, "candles", "Eva would like to buy {q} {i}."),
    ("Jonas", 1, "rain jacket", "Jonas. One {i}, size M."),
    ("Lucia", 7, "postcards", "Good morning, Lucia here: {q} {i} please."),
    ("Ahmed", 2, "phone chargers", "Ahmed needs {q} {i}."),
    ("Grace", 4, "plant pots", "Can Grace get {q} {i}?"),
    ("Mateo", 9, "tennis balls", "{q} {i} for Mateo, thank you."),
    ("Hana", 1, "umbrella", "Hana here. Just one {i}."),
    ("Igor", 5, "light bulbs", "I'm Igor, send me {q} {i}."),
    ("Zoe", 3, "scarves", "Zoe would love {q} {i}!"),
    ("Kofi", 2, "water bottles", "Kofi: {q} {i}, please."),
    ("Mei", 6, "bowls", "Hello, Mei. I want to order {q} {i}."),
    ("Paul", 1, "toolbox", "Paul here; one {i} please."),
    ("Sara", 4, "towels", "Sara would like {q} {i} delivered."),
    ("Yusuf", 11, "stickers", "{q} {i} for Yusuf."),
    ("Ines", 2, "lamps", "Ines. I'll take {q} {i}."),
    ("Bruno", 3, "bike tyres", "Bruno needs {q} {i} for his bikes."),
    ("Lea", 5, "jars of honey", "Lea here, {q} {i} please."),
    ("Omar", 1, "backpack", "Omar, one {i}, thanks!"),
    ("Julia", 7, "pens", "Hi! Julia wants {q} {i}."),
    ("Kai", 2, "pillows", "Kai: please ship {q} {i}."),
    ("Rosa", 4, "cups", "Rosa would like {q} {i}, thanks."),
    ("Finn", 6, "bananas", "Finn here, {q} {i} please."),
    ("Alma", 3, "keyrings", "Alma orders {q} {i}."),
    ("Theo", 1, "laptop stand", "This is Theo. One {i}, please."),
    ("Vera", 8, "envelopes", "Vera needs {q} {i}."),
]


def ticket_rows() -> list[dict]:
    return [{"messages": [{"role": "system", "content": TICKET_SYSTEM},
                          {"role": "user", "content": text},
                          {"role": "assistant", "content": label}]}
            for label, texts in TICKETS.items() for text in texts]


def order_rows() -> list[dict]:
    rows = []
    for name, quantity, item, template in ORDERS:
        answer = json.dumps({"name": name, "item": item, "quantity": quantity})
        rows.append({"messages": [{"role": "system", "content": ORDER_SYSTEM},
                                  {"role": "user", "content": template.format(q=quantity, i=item)},
                                  {"role": "assistant", "content": answer}]})
    return rows


def write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")


if __name__ == "__main__":
    write(HERE / "ticket-labels.openai.jsonl", ticket_rows())
    write(HERE / "order-json.openai.jsonl", order_rows())
