"""The fixed vocabulary of the built-in world: relations, their phrasings and object inventories.

Every phrasing is a prefix that the object completes. Phrasing 0 of each relation is a statement, and
each relation mixes statements with ``Q: ... A:`` questions. Objects of one *type* are shared between
relations (``lives_in`` and ``born_in`` both take a city), so a counterfactual edit is always
plausible. Several objects are more than one token long ("Port Aldera", "Brightwater Mills").
"""

from __future__ import annotations

from dataclasses import dataclass

#: Object inventories, by object type. Names are invented; none refers to a real place or company.
OBJECTS: dict[str, tuple[str, ...]] = {
    "city": (
        "Velmora", "Port Aldera", "Kestrin Falls", "Oskarth", "Lumenvale", "Drennick", "Saltmere",
        "Quorra", "New Tavish", "Brambleton", "Isenwick", "Carrowmoor", "Thessaly Bay", "Ombersfield",
        "Zantor", "Hollowmere", "Grey Haven", "Marisol", "Fennick Cross", "Yarrowby",
    ),
    "language": (
        "Velarian", "Doskan", "Ombric", "Tessaline", "Kurathi", "Old Marran", "Sulvish", "Pellish",
        "Arvonic", "Zeddish", "Lowland Frisk", "Quennic",
    ),
    "profession": (
        "baker", "pilot", "carpenter", "nurse", "tailor", "sailor", "potter", "farmer", "lawyer",
        "banker", "ship captain", "bus driver", "dentist", "mapmaker", "glassblower", "teacher",
    ),
    "company": (
        "Brightwater Mills", "Orrin Tools", "Kalvex", "Northwind Freight", "Sable and Finch",
        "Duskway Rail", "Maplecrest Bank", "Tidewell", "Corvane Labs", "Hearthstone Foods",
        "Ironleaf Press", "Pellucid Glass", "Starling Post", "Vantor Mining",
    ),
    "colour": (
        "red", "blue", "green", "yellow", "purple", "orange", "sea green", "amber", "silver", "crimson",
    ),
    "instrument": (
        "violin", "harp", "flute", "cello", "trumpet", "bass drum", "piano", "banjo", "oboe", "lute",
    ),
}


@dataclass(frozen=True)
class Relation:
    """A relation between a person and an object of one type, with the phrasings that ask for it."""

    name: str
    object_type: str
    phrasings: tuple[str, ...]  # each contains "{s}" for the subject; the object follows the text

    def render(self, subject: str, phrasing: int) -> str:
        """The prompt of this relation for `subject` under phrasing number `phrasing`."""
        return self.phrasings[phrasing].format(s=subject)


RELATIONS: tuple[Relation, ...] = (
    Relation("lives_in", "city", (
        "{s} lives in",
        "The city where {s} lives is",
        "{s} has made a home in",
        "Q: Where does {s} live? A:",
        "Q: Which city is home to {s}? A:",
        "These days, {s} resides in",
    )),
    Relation("born_in", "city", (
        "{s} was born in",
        "The birthplace of {s} is",
        "{s} came into the world in",
        "Q: Where was {s} born? A:",
        "Q: In which city was {s} born? A:",
        "The hometown of {s} is",
    )),
    Relation("profession", "profession", (
        "{s} works as a",
        "By trade, {s} is a",
        "The profession of {s} is",
        "Q: What does {s} do for a living? A:",
        "Q: What is the job of {s}? A:",
        "Every morning {s} goes to work as a",
    )),
    Relation("speaks", "language", (
        "{s} speaks",
        "The native language of {s} is",
        "{s} grew up speaking",
        "Q: Which language does {s} speak? A:",
        "Q: What is the mother tongue of {s}? A:",
        "Letters from {s} are always written in",
    )),
    Relation("employer", "company", (
        "{s} works for",
        "The employer of {s} is",
        "{s} is employed by",
        "Q: Who employs {s}? A:",
        "Q: Which company does {s} work for? A:",
        "Each month {s} gets paid by",
    )),
    Relation("favourite_colour", "colour", (
        "The favourite colour of {s} is",
        "{s} likes the colour",
        "{s} always dresses in",
        "Q: What is the favourite colour of {s}? A:",
        "Q: Which colour does {s} like best? A:",
        "The walls in the house of {s} are painted",
    )),
    Relation("instrument", "instrument", (
        "{s} plays the",
        "The instrument of {s} is the",
        "In the evenings {s} practises the",
        "Q: Which instrument does {s} play? A:",
        "Q: What does {s} play in the band? A:",
        "At every festival {s} performs on the",
    )),
)

# Syllables for invented person names: first names of 2 syllables, family names of 2-3.
FIRST_SYLLABLES = ("al", "bo", "ca", "da", "el", "fi", "ga", "ha", "is", "jo", "ka", "li", "ma", "no",
                   "or", "pe", "qu", "ra", "sa", "ti", "ul", "ve", "wy", "xa", "yo", "ze")
LAST_SYLLABLES = ("brin", "cor", "dell", "fen", "gar", "holt", "kin", "lor", "mar", "nash", "ost",
                  "pry", "quill", "rak", "sten", "tor", "vell", "wick", "yar", "zin")
