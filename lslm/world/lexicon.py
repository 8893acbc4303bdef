"""The story world's words: characters, jobs, places, things, feelings and activities.

Every list is a plain whitespace-separated string, so a reader can scan it at a glance.
Each word is one token of letters (no spaces, hyphens or apostrophes), which keeps the
checker's grammar exact. The lists are disjoint where a word could be read two ways (a
test checks it): "orange" is a colour, so the fruit list leaves it out.
"""

from __future__ import annotations

from dataclasses import dataclass


def words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Names come in pairs, girl's name i <-> boy's name i: the counterfactual twin of a story
# swaps each character for the partner name, so a name and its partner have the same role.
FEMALE_NAMES = words("""
    Mia Lily Emma Anna Sara Lucy Ella Zoe Ruby Nora Ivy Maya Amy Jane Kate Lena Hana Ada
    Eva Lola Nina Tara Gina Ruth Alice Clara Hazel Iris Jade Julia Laura Molly Olive Paula
    Rita Sophie Tina Vera Wendy Yara Zara Bella Cora Dora Elsa Fiona Greta Irene Jenny
    Lara Mona Nadia Penny Rosie Stella Tess Uma Leah Beth Heidi Agnes Becky Carla Diana
    Edna Frida Gwen Helga Inga Joy Kira Lina Mabel Nell Opal Polly Rhea Sadie Thea
    Alma Bianca Celia Delia Esme Flora Gemma Hilda Ida Kitty Lotte Mara Petra Rosa Selma
    Trudy Ursula Vivian Willa Zelda
""")
MALE_NAMES = words("""
    Tom Ben Sam Max Leo Jack Noah Liam Luke Finn Owen Jake Adam Eli Ivan Omar Paul Raj Ted
    Tim Bob Carl Dan Eric Fred Gus Hugo Ian Joe Len Mark Ned Oscar Pete Ray Seth Troy Vic
    Walt Zack Arlo Bruno Colin Dylan Ethan Felix George Henry Isaac Jonah Kevin Lucas
    Milo Nico Otto Peter Simon Victor Wade Abe Barry Cody Dennis Ezra Frank Gil Hank Igor
    Jasper Kurt Lenny Moses Nate Oliver Percy Ross Stan Theo Rufus Alfie Basil Cyril
    Dexter Edgar Floyd Gordon Harvey Ike Jerome Kenny Lionel Morris Norman Pablo Quentin
    Roland Silas Tobias Ulrich
""")

# Jobs a character can have. STEREOTYPED gives the pronoun a biased world would favour for
# a job: the ``pronoun_skew`` knob uses it, and ``counterfactual`` undoes it.
JOBS = words("""
    baker farmer doctor nurse teacher pilot builder painter cook fisher sailor driver
    singer dancer writer artist vet dentist firefighter guard gardener tailor carpenter
    plumber mechanic librarian scientist astronaut engineer judge clown magician potter
    miner shopkeeper barber waiter cleaner knight explorer photographer musician drummer
    poet inventor banker lawyer zookeeper beekeeper nanny secretary hairdresser florist
    soldier captain ranger coach butcher jeweler reporter lifeguard grocer
""")
STEREOTYPED: dict[str, str] = {
    **dict.fromkeys(words("nurse teacher nanny dancer librarian secretary hairdresser "
                          "florist"), "she"),
    **dict.fromkeys(words("pilot builder firefighter mechanic plumber engineer carpenter "
                          "soldier miner butcher"), "he"),
}


@dataclass(frozen=True)
class Place:
    name: str
    prep: str  # "in the park", "at the zoo", "on the farm"
    kind: str  # which animals live there and what people do there


def _places(kind: str, text: str) -> list[Place]:
    return [Place(*item.split(":"), kind) for item in text.split()]


PLACES: tuple[Place, ...] = tuple(
    _places("town", """school:at library:at market:at shop:at bakery:at zoo:at museum:at
        hospital:at station:at playground:on cafe:at castle:at circus:at fair:at
        theater:at stadium:at square:in village:in city:in bridge:on street:on
        airport:at palace:at fountain:at lighthouse:at""")
    + _places("green", """park:in garden:in meadow:in field:in hill:on mountain:on valley:in
        forest:in woods:in jungle:in yard:in campsite:at cave:in greenhouse:in
        treehouse:in marsh:in""")
    + _places("water", """beach:on lake:at river:at pond:at island:on harbor:at pool:at
        waterfall:at shore:on seaside:at pier:on riverbank:on""")
    + _places("farm", """farm:on barn:in stable:in ranch:on orchard:in pasture:in
        vineyard:in henhouse:in windmill:at""")
)

# Animals one can see at a kind of place (not owned, so never part of the story's state).
ANIMALS: dict[str, tuple[str, ...]] = {
    "town": words("pigeon sparrow crow spider mouse rat moth"),
    "green": words("bird squirrel butterfly bee owl fox deer rabbit snail ladybug hedgehog "
                   "robin worm ant beetle mole badger chipmunk bear woodpecker raccoon bat "
                   "wolf toad caterpillar grasshopper dragonfly"),
    "water": words("duck swan crab seal frog heron seagull pelican otter dolphin starfish "
                   "octopus jellyfish lobster beaver"),
    "farm": words("cow pig sheep hen goat horse donkey rooster goose turkey ox mule calf"),
}
ANIMAL_LOOKS = words("little big tiny young old sleepy hungry friendly noisy busy happy "
                     "shy curious lazy playful brown white gray black spotted")


@dataclass(frozen=True)
class Kind:
    """A kind of thing a character can own: how it can look ("a red kite"), what one wants
    to do with it (goal verbs, base and past forms) and what can go wrong (obstacle names
    from ``lslm.world.templates.OBSTACLES``)."""

    nouns: tuple[str, ...]
    looks: tuple[str, ...]
    verbs: tuple[tuple[str, str], ...]
    obstacles: tuple[str, ...]
    gift: bool = False  # small enough to give as a thank-you present


# Goals one does alone: "Tom and Mia wore the hat together" is not a sentence of the world.
SOLO_VERBS = ("wear", "show", "hide")


def _verbs(text: str) -> tuple[tuple[str, str], ...]:
    """'play_with:played_with show:showed' -> (("play with", "played with"), ("show", "showed"))."""
    return tuple(tuple(f.replace("_", " ") for f in item.split(":")) for item in text.split())


COLORS = "red blue green yellow pink purple orange brown black white gray"
SIZES = "big small little tiny"
KINDS: dict[str, Kind] = {
    "toy": Kind(words("doll robot truck train puzzle top yoyo puppet whistle dinosaur "
                      "teddy racecar spinner playhouse pinwheel rattle kaleidoscope jigsaw "
                      "snowglobe domino"),
                words(f"{COLORS} {SIZES} new old shiny funny special lucky wooden colorful fancy"),
                _verbs("play_with:played_with show:showed"),
                ("broken", "lost", "dirty", "wet")),
    "flyer": Kind(words("kite glider plane rocket balloon"),
                  words(f"{COLORS} {SIZES} huge new shiny fast bright special lucky colorful "
                        "striped"),
                  _verbs("fly:flew show:showed"),
                  ("broken", "lost", "stuck_high", "torn")),
    "ball": Kind(words("ball frisbee hoop beanbag"),
                 words(f"{COLORS} {SIZES} new old shiny bouncy striped spotted"),
                 _verbs("throw:threw play_with:played_with"),
                 ("lost", "stuck_high", "dirty", "wet")),
    "boat": Kind(words("boat raft canoe sailboat kayak dinghy"),
                 words(f"{COLORS} {SIZES} new old wooden fast sturdy"),
                 _verbs("sail:sailed"),
                 ("broken", "lost", "stuck_mud", "heavy")),
    "reading": Kind(words("book map letter comic diary notebook poem atlas storybook "
                          "magazine recipe postcard"),
                    words(f"{SIZES} new old thick thin special secret lovely funny"),
                    _verbs("read:read share:shared"),
                    ("torn", "wet", "lost", "dirty")),
    "clothes": Kind(words("hat scarf coat sweater dress shirt sock boot shoe glove cap "
                          "jacket skirt apron cape vest mitten raincoat bonnet helmet sandal "
                          "slipper necktie"),
                    words(f"{COLORS} new old soft warm cozy fluffy striped spotted fancy "
                          "pretty lovely plain woolly"),
                    _verbs("wear:wore show:showed"),
                    ("torn", "dirty", "lost", "wet", "stuck_high")),
    "food": Kind(words("cake pie cookie apple bun sandwich pizza muffin pear banana lemon "
                       "melon carrot donut pancake cupcake candy plum peach tart pretzel "
                       "biscuit waffle cherry lollipop strawberry grape cracker popsicle bagel "
                       "croissant"),
                 words(f"{SIZES} huge fresh sweet juicy tasty warm crunchy yummy"),
                 _verbs("eat:ate share:shared"),
                 ("lost", "dirty"), gift=True),
    "music": Kind(words("drum flute guitar violin horn bell harp trumpet banjo tambourine "
                        "xylophone piano accordion recorder maraca cymbal"),
                  words(f"{SIZES} new old shiny wooden golden silver fancy loud"),
                  _verbs("play:played show:showed"),
                  ("broken", "lost", "wet", "heavy")),
    "ride": Kind(words("bike scooter sled wagon skateboard tricycle unicycle"),
                 words(f"{COLORS} {SIZES} new old fast shiny sturdy"),
                 _verbs("ride:rode"),
                 ("broken", "lost", "stuck_mud", "dirty")),
    "art": Kind(words("crayon paintbrush pencil marker sketchbook easel"),
                words(f"{COLORS} {SIZES} new old"),
                _verbs("draw_with:drew_with show:showed"),
                ("broken", "lost", "wet")),
    "treasure": Kind(words("shell stone coin ring necklace bracelet crown medal badge "
                           "button feather key locket pearl gem trophy compass diamond ribbon"),
                     words("tiny little shiny sparkly golden silver old special lucky pretty "
                           "smooth round beautiful magic"),
                     _verbs("show:showed hide:hid"),
                     ("lost", "dirty", "stuck_mud"), gift=True),
    "container": Kind(words("basket bucket bag box jar cup bowl bottle pot vase backpack "
                            "lunchbox teapot kettle wheelbarrow suitcase crate"),
                      words(f"{COLORS} {SIZES} new old wooden sturdy plain"),
                      _verbs("fill:filled carry:carried"),
                      ("broken", "lost", "heavy", "dirty")),
    "plant": Kind(words("flower seed tulip sunflower cactus daisy acorn"),
                  words("red yellow pink purple orange white small little tiny pretty lovely "
                        "beautiful"),
                  _verbs("plant:planted show:showed"),
                  ("lost", "heavy", "wet"), gift=True),
    "tool": Kind(words("hammer shovel rake broom ladder rope net lantern flashlight umbrella "
                       "telescope whisk"),
                 words(f"{COLORS} {SIZES} new old sturdy wooden shiny"),
                 _verbs("use:used bring:brought"),
                 ("broken", "lost", "heavy", "dirty")),
    "walked_pet": Kind(words("dog puppy pony lamb ferret piglet"),
                       words(f"brown black white gray golden {SIZES} fluffy funny sleepy "
                             "playful cute spotted"),
                       _verbs("walk:walked feed:fed play_with:played_with"),
                       ("lost", "dirty", "wet")),
    "small_pet": Kind(words("cat kitten bunny hamster turtle parrot chick gerbil lizard"),
                      words(f"brown black white gray golden {SIZES} fluffy funny sleepy "
                            "playful cute striped"),
                      _verbs("feed:fed play_with:played_with"),
                      ("lost", "stuck_high", "dirty")),
}

# Every adjective a thing can have, for the grammar's "a red" slot.
THING_LOOKS = tuple(dict.fromkeys(look for kind in KINDS.values() for look in kind.looks))

# Character traits and feelings.
TRAITS = words("kind brave shy funny clever curious gentle busy friendly helpful careful "
               "quiet smart strong cheerful honest patient silly polite hardworking "
               "playful generous calm wise loyal tidy bold modest sweet lively cheeky "
               "daring thoughtful")
GOOD_FEELINGS = words("happy glad proud excited thankful joyful delighted pleased relieved "
                       "grateful content merry overjoyed")
BAD_FEELINGS = words("sad upset worried scared angry unhappy lonely grumpy afraid nervous "
                     "miserable gloomy frustrated disappointed cross hurt tearful heartbroken "
                     "annoyed")

# What two friends do together at a kind of place, in the past tense.
ACTIVITIES: dict[str, tuple[str, ...]] = {
    "town": ("played a game", "read stories", "drew pictures", "sang a song",
             "told jokes", "danced to music", "shared a snack", "laughed a lot",
             "ate ice cream", "looked at the lights", "visited the shops",
             "watched a puppet show", "rode the carousel", "fed the pigeons"),
    "green": ("picked flowers", "had a picnic", "played tag", "rolled in the grass",
              "climbed a tree", "watched the clouds", "chased butterflies",
              "played hide and seek", "ran races", "looked for bugs",
              "flew paper planes", "sat under a tree", "made a daisy chain"),
    "water": ("built a sandcastle", "looked for shells", "splashed in the water",
              "went for a swim", "watched the boats", "fed the ducks", "skipped stones",
              "dug a big hole", "collected pebbles", "paddled in the waves",
              "caught little fish", "watched the waves", "floated on their backs"),
    "farm": ("fed the chickens", "collected eggs", "played in the hay", "brushed the horses",
             "picked apples", "watched the cows", "rode in a cart", "planted beans",
             "counted the sheep", "jumped in the puddles", "rode on a tractor",
             "chased the piglets", "built a scarecrow"),
}

# What each job's holder does every day ("Every day, Tom baked fresh bread."): a phrase
# names its job, so the checker can hold a character to the job they were given.
WORK: dict[str, str] = {
    "baker": "baked fresh bread", "farmer": "grew corn and wheat",
    "doctor": "helped sick people get well", "nurse": "took care of sick children",
    "teacher": "taught children to read", "pilot": "flew big planes across the sky",
    "builder": "built houses with bricks", "painter": "painted houses in bright colors",
    "cook": "made soup for hungry people", "fisher": "caught fish in the sea",
    "sailor": "sailed across the sea", "driver": "drove a big bus around town",
    "singer": "sang songs for everyone", "dancer": "danced on a big stage",
    "writer": "wrote stories about dragons", "artist": "painted pictures of the sea",
    "vet": "helped sick animals", "dentist": "took care of teeth",
    "firefighter": "put out fires", "guard": "watched the gates of the city",
    "gardener": "grew roses in neat rows", "tailor": "made clothes for the whole town",
    "carpenter": "made tables and chairs", "plumber": "fixed pipes and sinks",
    "mechanic": "fixed cars and trucks", "librarian": "looked after the books",
    "scientist": "did experiments in a lab", "astronaut": "trained to fly to the moon",
    "engineer": "built bridges and machines", "judge": "listened to both sides of every story",
    "clown": "made children laugh", "magician": "did magic tricks",
    "potter": "made cups and bowls from clay", "miner": "dug for gold deep underground",
    "shopkeeper": "sold sweets in a little shop", "barber": "cut hair",
    "waiter": "brought food to hungry guests", "cleaner": "kept the streets clean",
    "knight": "rode a horse and guarded the king", "explorer": "visited faraway lands",
    "photographer": "took pictures of animals", "musician": "played music in the square",
    "drummer": "played loud drums in a band", "poet": "wrote poems about the moon",
    "inventor": "built strange machines", "banker": "counted money at the bank",
    "lawyer": "helped people with the law", "zookeeper": "fed the lions and tigers",
    "beekeeper": "looked after buzzing bees", "nanny": "looked after little children",
    "secretary": "answered the phone at the office", "hairdresser": "cut and styled hair",
    "florist": "sold roses and lilies", "soldier": "marched with the army",
    "captain": "steered a big ship", "ranger": "looked after the forest",
    "coach": "trained the football team", "butcher": "sold meat at the market",
    "jeweler": "made rings and necklaces", "reporter": "wrote news for the paper",
    "lifeguard": "watched the swimmers", "grocer": "sold fruit and vegetables",
}

# How a story's day begins ("One windy morning, Tom wanted to fly his kite ...").
WHEN = ("One day", "One morning", "One evening", "One afternoon", "One sunny day",
        "One windy morning", "One summer day", "One spring morning", "One cold winter day",
        "One bright Saturday", "Last week", "Early one morning")
