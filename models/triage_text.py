"""Generated claim descriptions for training and evaluating the text triage model, in two wordings.

Each text has three labels: its topic (auto, home, travel, health), whether it carries suspicious
language (cash, missing receipts, no witnesses, no invoice, second-hand goods, pressure not to check),
and whether it asks for urgency. The ``train`` wording and the ``heldout`` wording share no template
and few content words (``windscreen`` vs ``windshield``, ``receipt lost`` vs ``no proof of purchase``),
so the held-out score measures generalisation to new phrasing, not memorised sentences.
Labels are flipped at `LABEL_NOISE` so no head is separable by one word and calibration means something.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TOPICS = ("auto", "home", "travel", "health")
LABEL_NOISE = 0.03
SUSPICIOUS_RATE = 0.25
URGENT_RATE = 0.25

_WORDINGS: dict[str, dict[str, dict | list]] = {
    "train": {
        "topic": {
            "auto": ["Rear-ended at a junction, bumper and tail light damaged.", "Windscreen cracked by a stone on the motorway.",
                     "Scratched the side panel while parking in a garage.", "Collision with a deer on a country road.",
                     "My car was hit while parked outside the office, door dented.", "The engine failed after a pothole on the road.",
                     "Another driver reversed into my vehicle at the supermarket.", "Hail left dents across the car roof and bonnet."],
            "home": ["Water leak from the washing machine damaged the kitchen floor.", "Storm blew tiles off the roof.",
                     "Burst pipe in the bathroom during frost.", "Power surge destroyed the fridge.",
                     "Burglars broke the back door and took a laptop.", "Fire in the kitchen damaged the cupboards and ceiling.",
                     "A tree fell on the garden shed in the wind.", "Damp spread through the bedroom wall after heavy rain."],
            "travel": ["Flight cancelled, paid for a hotel night.", "Suitcase delayed three days, bought essentials.",
                       "Fell ill abroad and saw a local doctor.", "Camera damaged on a boat trip.",
                       "Missed the connecting flight because of a strike.", "Passport and wallet stolen at the airport.",
                       "The tour was cancelled and the deposit not refunded.", "Luggage lost by the airline on the return journey."],
            "health": ["Physiotherapy sessions after a knee injury.", "Emergency dental treatment.",
                       "Prescription glasses replaced.", "Outpatient surgery on the left hand.",
                       "Blood tests and a specialist consultation.", "Broke my wrist and had it set in hospital.",
                       "MRI scan of the lower back ordered by the GP.", "Stitches at the clinic after a cut to the hand."],
        },
        "suspicious": ["Paid the repairer in cash.", "The receipt was lost.", "There were no witnesses.",
                       "Items were bought second hand without invoice.", "I paid cash so there is no invoice.",
                       "Lost the receipts when moving house.", "Nobody else saw what happened.",
                       "The seller did not give me an invoice."],
        "urgent": ["Need the payment urgently, please.", "Please pay immediately.", "I need the money asap.",
                   "This is urgent, please process today.", "Please settle this as soon as possible."],
        "filler": ["", "", "Photos attached.", "Policy number in the form.", "Happy to provide more details.",
                   "First claim on this policy."],
    },
    "heldout": {
        "topic": {
            "auto": ["Someone drove into the back of my hatchback at the lights.", "A chip in the windshield spread into a long crack.",
                     "Vandals keyed the paintwork of my vehicle overnight.", "Skidded on ice and hit the kerb, wheel rim bent.",
                     "The van's mirror was knocked off by a passing lorry.", "Car towed after the gearbox seized on the highway."],
            "home": ["The boiler flooded the utility room.", "Gale force winds ripped the gutter from the house.",
                     "Frozen plumbing split under the sink and soaked the carpet.", "Lightning strike fried the television and router.",
                     "Intruders forced the patio window and stole jewellery.", "Smoke from a chimney fire blackened the living room."],
            "travel": ["Our holiday flight was scrapped and we had to stay at an airport hotel.",
                       "The airline misplaced my bag for the whole trip.", "Got food poisoning on vacation and needed a clinic abroad.",
                       "Cruise excursion cancelled, tickets non-refundable.", "Pickpocketed on the metro in Rome, cards and cash gone.",
                       "Train strike meant we missed the ferry and rebooked."],
            "health": ["Root canal at the dentist after severe toothache.", "Sprained ankle needed a scan and a brace.",
                       "Course of physio for a shoulder problem.", "Replacement contact lenses and an eye test.",
                       "Day case operation to remove a cyst.", "Admitted overnight to hospital with chest pain for checks."],
        },
        "suspicious": ["I settled the bill in notes, no paperwork.", "Have no proof of purchase any more.",
                       "Nobody was around to confirm it.", "Bought it from a friend, no bill exists.",
                       "The garage only takes payment off the books.", "I threw away the paperwork by mistake."],
        "urgent": ["I must have the funds by tomorrow.", "Kindly transfer the amount right away.",
                   "Time is critical, I cannot wait for the money.", "Please rush this claim through."],
        "filler": ["", "", "Pictures enclosed.", "Can send more information.", "Contact me by email."],
    },
}


def generate_texts(n: int, wording: str = "train", seed: int = 7) -> pd.DataFrame:
    """`n` descriptions in `wording` ("train" or "heldout") with columns text, topic, suspicious, urgent."""
    if wording not in _WORDINGS:
        raise ValueError(f"wording must be one of {sorted(_WORDINGS)}, not {wording!r}")
    w = _WORDINGS[wording]
    rng = np.random.default_rng([seed, 0 if wording == "train" else 1])
    rows = []
    for _ in range(n):
        topic = str(rng.choice(TOPICS))
        susp, urgent = bool(rng.random() < SUSPICIOUS_RATE), bool(rng.random() < URGENT_RATE)
        parts = [str(rng.choice(w["topic"][topic]))]
        if susp:
            parts.append(str(rng.choice(w["suspicious"])))
        if urgent:
            parts.append(str(rng.choice(w["urgent"])))
        parts.append(str(rng.choice(w["filler"])))
        body = [p for p in parts[1:] if p]
        rng.shuffle(body)
        text = " ".join([parts[0], *body])
        if rng.random() < LABEL_NOISE:
            topic = str(rng.choice([t for t in TOPICS if t != topic]))
        if rng.random() < LABEL_NOISE:
            susp = not susp
        if rng.random() < LABEL_NOISE:
            urgent = not urgent
        rows.append((text, topic, susp, urgent))
    return pd.DataFrame(rows, columns=["text", "topic", "suspicious", "urgent"])
