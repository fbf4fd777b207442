"""A small labeled text set written by this project: short sentences about four everyday topics.

It is synthetic: sentences are assembled from hand-written phrase lists per topic, with shared filler
words and some cross-topic vocabulary, under a fixed seed. It exists so the text recipes can train
offline; it says nothing about real-world text classification accuracy.
"""

from __future__ import annotations

import random

TOPICS = ["sports", "weather", "cooking", "technology"]

_SUBJECTS = {
    "sports": ["the striker", "our team", "the goalkeeper", "the coach", "the home side", "the young sprinter",
               "the tennis champion", "the visiting club", "the captain", "the referee"],
    "weather": ["the forecast", "a cold front", "the storm", "morning fog", "the heatwave", "heavy rain",
                "a light breeze", "the thunderstorm", "the sky", "the snowfall"],
    "cooking": ["the chef", "my grandmother", "the recipe", "the soup", "this sauce", "the bakery",
                "the pasta", "a pinch of salt", "the oven", "the new cookbook"],
    "technology": ["the new phone", "the software update", "the laptop", "the startup", "the server",
                   "the app", "the processor", "the database", "the robot", "the network"],
}
_PREDICATES = {
    "sports": ["scored twice in the final", "won the match after extra time", "missed a late penalty",
               "trained hard before the championship", "lost the derby at the stadium",
               "celebrated a record season", "was injured during the game", "signed a new contract",
               "finished first in the race", "defended well in the second half"],
    "weather": ["brings showers this afternoon", "will clear by the weekend", "turned the roads icy",
                "pushed temperatures above thirty degrees", "is expected to reach the coast tonight",
                "left puddles across the city", "kept the flights grounded", "cooled the evening air",
                "covered the hills in white", "made the humidity unbearable"],
    "cooking": ["simmered for two hours", "needs more garlic and butter", "tastes better with fresh basil",
                "was baked until golden", "won praise at the dinner party", "uses flour, eggs and milk",
                "burned in the pan", "was served with roasted vegetables", "calls for a slow marinade",
                "filled the kitchen with the smell of bread"],
    "technology": ["crashed after the upgrade", "ships with a faster chip", "leaked user passwords",
                   "runs the model on the cloud", "doubled its battery life", "was patched overnight",
                   "supports wireless charging", "launched a beta for developers",
                   "reduced latency on every request", "stores the files encrypted"],
}
_OPENERS = ["", "", "", "yesterday ", "apparently ", "this week ", "honestly, ", "as expected, ",
            "according to the news, ", "once again "]
_CLOSERS = ["", "", "", " again", " today", " as usual", " and everyone noticed", " last night",
            " in the city", " this season"]


def topic_sentences(per_topic: int = 100, seed: int = 7) -> tuple[list[str], list[int]]:
    """Return ``per_topic`` distinct sentences per topic and their topic ids, shuffled with ``seed``."""
    rng = random.Random(seed)
    rows: list[tuple[str, int]] = []
    for label, topic in enumerate(TOPICS):
        seen: set[str] = set()
        while len(seen) < per_topic:
            sentence = (rng.choice(_OPENERS) + rng.choice(_SUBJECTS[topic]) + " "
                        + rng.choice(_PREDICATES[topic]) + rng.choice(_CLOSERS))
            if rng.random() < 0.15:  # borrow a phrase from another topic so the task is not trivially separable
                other = rng.choice([t for t in TOPICS if t != topic])
                sentence += " while " + rng.choice(_SUBJECTS[other])
            sentence = sentence[0].upper() + sentence[1:] + "."
            if sentence not in seen:
                seen.add(sentence)
                rows.append((sentence, label))
    rng.shuffle(rows)
    return [text for text, _ in rows], [label for _, label in rows]


# Held-out paraphrases: the same four topics in words the training sentences never use, so a model must
# generalise beyond the training vocabulary (a pretrained encoder can; a vocabulary learned from 280
# sentences cannot).
_PARAPHRASES = {
    "sports": ["the midfielder netted a stunning volley", "fans invaded the pitch after the final whistle",
               "the batsman hit a century at the cricket ground", "the cyclist crossed the line ahead of the peloton",
               "the boxer knocked out his opponent in round three", "the swimmer broke the world record",
               "the quarterback threw a touchdown pass", "the umpire called a foul on the point guard",
               "the marathon runner collapsed near the finish", "the hockey squad clinched the playoffs"],
    "weather": ["drizzle is likely overnight", "a blizzard buried the valley", "gusts topped eighty kilometres",
                "the meteorologist predicts sunshine", "hail damaged parked cars", "a drought parched the farms",
                "lightning struck the tower", "a tornado touched down near the village",
                "frost formed on the windscreen", "the monsoon arrived early"],
    "cooking": ["she kneaded the dough and let it rise", "he whisked the custard until smooth",
                "the stew was seasoned with cumin and paprika", "they grilled salmon fillets",
                "the pastry chef piped whipped cream", "we chopped onions for the curry",
                "the risotto needed more stock", "the brownies came out fudgy", "she caramelised the shallots",
                "the barbecue ribs were smoked overnight"],
    "technology": ["the smartphone received a firmware patch", "engineers deployed the microservice to kubernetes",
                   "the chipmaker unveiled a quantum prototype", "hackers exploited a zero-day vulnerability",
                   "the browser added a privacy feature", "the tablet's touchscreen froze",
                   "programmers refactored the codebase", "the drone streamed footage over wifi",
                   "the website went offline during the outage", "the wearable tracks your heart rate"],
}


def paraphrase_sentences() -> tuple[list[str], list[int]]:
    """Four topics in vocabulary unseen in ``topic_sentences``: 10 sentences per topic."""
    texts, labels = [], []
    for label, topic in enumerate(TOPICS):
        for phrase in _PARAPHRASES[topic]:
            texts.append(phrase[0].upper() + phrase[1:] + ".")
            labels.append(label)
    return texts, labels
