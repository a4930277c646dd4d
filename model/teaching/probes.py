"""Hand-written probe sets: generalisation measured on sentences no generator produced.

Every item below was written by hand, not sampled from `model.teaching.corpora`. They use the models'
words in structures that test generalisation: two or three place phrases in a row, two size
adjectives, fronted place phrases, object and subject relative clauses as attractors, and
combinations of these, and the two classic cases: coordination ("the cat and the dog" -> are) and
"with" as an attractor ("the dog with the cats" -> is). The generator was widened so that most of these structures occur in
training (two modifiers, two size adjectives, fronted places, object relatives), but some
probes go beyond it (three modifiers, "in the garden ," fronted, people inside object-headed
phrases, three places in a row, an adjective on the food in a "because" sentence). The probe
sentences themselves never occur in training: `corpora.lm_datasets` and
`corpora.translation_datasets` drop any training sentence that starts with an agreement probe
prefix or equals a translation probe (tests/test_corpora.py checks it).
"""
from __future__ import annotations

# (prefix ending right before the verb, correct verb, wrong verb, what is tested)
AGREEMENT_PROBES: list[tuple[str, str, str, str]] = [
    # two place phrases
    ("the keys to the cabinet near the doors", "are", "is", "two PPs"),
    ("the key to the cabinets behind the doors", "is", "are", "two PPs"),
    ("the boxes under the table beside the lamp", "were", "was", "two PPs"),
    ("the cup near the windows behind the chairs", "was", "were", "two PPs"),
    ("the dog near the horses behind the boxes", "is", "are", "two PPs"),
    ("the wolves beside the table under the lamps", "are", "is", "two PPs"),
    ("the book for the girls near the door", "is", "are", "two PPs, a person in an object phrase"),
    ("the lamps behind the big box near the window", "were", "was", "two PPs"),
    ("the book under the chairs near the windows", "was", "were", "two PPs"),
    ("the cabinets for the book beside the window", "are", "is", "two PPs"),
    # two size adjectives
    ("the small old dog behind the boxes", "is", "are", "two size adjectives"),
    ("the big young horses near the table", "are", "is", "two size adjectives"),
    ("the little old keys to the cabinet", "were", "was", "two size adjectives"),
    ("the old small cabinet for the books", "is", "are", "two size adjectives"),
    ("the young little cats that the dog chased", "are", "is", "two size adjectives, object relative"),
    ("the big old door behind the chairs", "was", "were", "two size adjectives"),
    ("the lamp near the big old tables", "is", "are", "two size adjectives on the attractor"),
    # fronted place phrases
    ("in the kitchen , the cups near the window", "are", "is", "fronted place"),
    ("at night , the dog behind the doors", "was", "were", "fronted place"),
    ("in the morning , the keys to the cabinets", "are", "is", "fronted place"),
    ("near the river , the horse that saw the wolves", "is", "are", "fronted place, subject relative"),
    ("in the garden , the boxes under the table", "were", "was", "fronted place not in the grammar"),
    ("at night , the small birds beside the lamp", "are", "is", "fronted place"),
    ("in the morning , the small old keys to the cabinets", "were", "was", "fronted place, two size adjectives"),
    ("at night , the old dog that the foxes followed", "is", "are", "fronted place, object relative"),
    # relative clauses as attractors
    ("the cat that the dogs chased", "is", "are", "object relative"),
    ("the dogs that the cat saw", "are", "is", "object relative"),
    ("the girl that the boys followed", "was", "were", "object relative"),
    ("the horses that watched the fox", "are", "is", "subject relative"),
    ("the farmer that found the rabbits", "is", "are", "subject relative"),
    ("the mice that the old cat liked", "were", "was", "object relative"),
    ("the woman that the children saw", "is", "are", "object relative"),
    ("the men that the girl watched", "are", "is", "object relative"),
    ("the girls that the old man liked", "were", "was", "object relative"),
    # combinations, some beyond the grammar's two modifiers
    ("the key to the box near the doors behind the chairs", "is", "are", "three PPs"),
    ("the dog that the cats chased near the boxes", "was", "were", "object relative + PP"),
    ("the cats near the table that the dog saw", "are", "is", "PP + object relative"),
    ("the rabbit behind the cups that the wolves watched", "is", "are", "PP + object relative"),
    ("the bears that the farmer saw near the lamps", "are", "is", "object relative + PP"),
    ("the ducks that followed the horse behind the box", "were", "was", "subject relative + PP"),
    # coordination with "and": the subject is plural even when both nouns are singular
    ("the cat and the dog", "are", "is", "and"),
    ("the key and the box", "were", "was", "and"),
    ("the old horse and the small goat", "are", "is", "and, adjectives"),
    ("the man and the woman", "were", "was", "and, people"),
    ("the book and the lamp near the window", "are", "is", "and + PP"),
    ("in the morning , the fox and the rabbit", "are", "is", "fronted place, and"),
    ("the cat and the dog with the ball", "were", "was", "and + with (not in the grammar)"),
    # "with" as an attractor: it never changes the verb's number
    ("the dog with the cats", "is", "are", "with"),
    ("the dogs with the cat", "are", "is", "with"),
    ("the box with the keys", "was", "were", "with"),
    ("the boxes with the key", "were", "was", "with"),
    ("the girl with the dogs", "is", "are", "with, a person"),
    ("the horse with the boxes near the doors", "was", "were", "with + PP"),
    ("the old wolves with the small bird", "are", "is", "with, adjectives"),
]

# (English, French, what is tested)
TRANSLATION_PROBES: list[tuple[str, str, str]] = [
    ("the black cat ate the mouse in the garden in the morning",
     "le chat noir a mangé la souris dans le jardin le matin", "two places"),
    ("the dogs saw the horse near the house at night", "les chiens ont vu le cheval près de la maison la nuit",
     "two places"),
    ("he is reading a book in the garden at night", "il lit un livre dans le jardin la nuit",
     "progressive, two places"),
    ("the cat ate the mouse in the garden near the house in the morning",
     "le chat a mangé la souris dans le jardin près de la maison le matin", "three places (not in the grammar)"),
    ("she is eating a small red apple", "elle mange une petite pomme rouge", "pronoun, indefinite, two adjectives"),
    ("they are watching the old grey wolves", "ils regardent les vieux loups gris", "pronoun, progressive"),
    ("he is reading the old books", "il lit les vieux livres", "pronoun, progressive"),
    ("she found an old white box", "elle a trouvé une vieille boîte blanche", "an, feminine agreement"),
    ("the small black cat sat on the mat", "le petit chat noir s'est assis sur le tapis", "sat"),
    ("the white mice sat under the table", "les souris blanches se sont assises sous la table", "sat, feminine plural"),
    ("the old goat sat on the chair", "la vieille chèvre s'est assise sur la chaise", "sat, feminine"),
    ("they sat in the garden", "ils se sont assis dans le jardin", "sat, pronoun"),
    ("the old white bear", "le vieil ours blanc", "noun phrase, vieil before a vowel"),
    ("an old brown horse", "un vieux cheval brun", "noun phrase, an"),
    ("the young grey hens", "les jeunes poules grises", "noun phrase, feminine plural"),
    ("the bear saw the old cabinet", "l'ours a vu la vieille armoire", "elision"),
    ("the black bear found the cabinet", "l'ours noir a trouvé l'armoire", "elision twice"),
    ("the old bear is eating the honey", "le vieil ours mange le miel", "vieil, progressive"),
    ("the door to the black box is in the kitchen", "la porte de la boîte noire est dans la cuisine", "of-phrase"),
    ("the boxes to the old cabinets were under the bed", "les boîtes des vieilles armoires étaient sous le lit",
     "of-phrase, de + les = des"),
    ("the white dog was near the house", "le chien blanc était près de la maison", "location"),
    ("the small white cat ate the soup because it was hot",
     "le petit chat blanc a mangé la soupe parce qu'elle était chaude", "it = the food (feminine)"),
    ("the grey mice liked the cheese because they were tired",
     "les souris grises ont aimé le fromage parce qu'elles étaient fatiguées", "they = the eaters (feminine)"),
    ("the old cow ate the bread because it was fresh", "la vieille vache a mangé le pain parce qu'il était frais",
     "it = the food (masculine)"),
    ("the young duck liked the pie because it was sweet",
     "le jeune canard a aimé la tarte parce qu'elle était sucrée", "it = the food (feminine)"),
    ("the black goat ate the fish because it was hungry",
     "la chèvre noire a mangé le poisson parce qu'elle avait faim", "it = the eater (feminine)"),
    ("the cat ate the red apple because it was sweet", "le chat a mangé la pomme rouge parce qu'elle était sucrée",
     "adjective on the food (not in the grammar)"),
    ("a small dog chased an old cat", "un petit chien a chassé un vieux chat", "indefinite subject and object"),
    ("the girl sees a white rabbit in the garden", "la fille voit un lapin blanc dans le jardin", "present"),
    ("the women like the red apples at night", "les femmes aiment les pommes rouges la nuit", "plural agreement"),
    ("the boys are eating a big cake", "les garçons mangent un grand gâteau", "progressive"),
    ("she watches the young horses near the house in the morning",
     "elle regarde les jeunes chevaux près de la maison le matin", "pronoun, two places"),
    ("the old wolf is watching a black duck", "le vieux loup regarde un canard noir", "progressive"),
    ("the hens found the green ball on the table", "les poules ont trouvé la balle verte sur la table",
     "feminine plural subject"),
]


def agreement_probe_prefixes() -> list[str]:
    return [p for p, _, _, _ in AGREEMENT_PROBES]


def agreement_probe_items() -> list[dict]:
    """In the format of corpora.agreement_items, for model.training.evaluate.agreement_accuracy."""
    return [{"prefix": p, "correct": c, "wrong": w, "what": what} for p, c, w, what in AGREEMENT_PROBES]


def translation_probe_sources() -> list[str]:
    return [e for e, _, _ in TRANSLATION_PROBES]


def translation_probe_pairs() -> list[tuple[str, str]]:
    return [(e, f) for e, f, _ in TRANSLATION_PROBES]
