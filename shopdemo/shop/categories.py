"""Categories of the demo shop, derived from the product names of the Online Retail data.

The UCI Online Retail data has no categories: each product is a stock code and a short
upper-case name such as ``WHITE HANGING HEART T-LIGHT HOLDER``. ``shop_load_retail``
puts every product in one category with :func:`categorize`, which walks an ordered list
of keyword rules and returns the category of the **first** rule that matches.

How a rule matches
    The name is upper-cased and every keyword of the rule is looked for as a whole word
    or phrase (``"T-LIGHT"`` also matches ``T LIGHT``; a trailing ``S``/``ES`` is
    allowed, so ``CANDLE`` matches ``CANDLES``). Keywords never match inside another
    word: ``RING`` does not match ``EARRINGS`` or ``SPRING``.

Why the order matters
    Names mix a product type with a theme or pattern (``CHRISTMAS CARD``, ``TEA TOWEL``,
    ``RED RETROSPOT CAKE CASES``). The rules come in four groups, tried in this order:

    1. *Specific phrases* that a broader rule further down would misfile: ``TEA TOWEL``
       and ``EGG CUP`` are kitchen things, not tea or Easter; ``HOT WATER BOTTLE`` is
       home comfort, not a drinking bottle; ``KEY RING`` and ``HAIR`` slides are
       accessories; ``BIRTHDAY CARD`` is a card, not party ware; ``T-LIGHT`` holders are
       lighting, ``METAL SIGN`` a sign, ``HERB MARKER`` garden; pens, pencils,
       notebooks and stickers are stationery whatever their theme (``TEATIME GEL PENS``),
       while ``PARTY BAG + STICKER SET`` and ``COLOURING PENCILS`` are toys.
    2. *Seasons*: anything Christmas (Christmas, Xmas, Advent, Santa, reindeer, snow,
       baubles, angels, crackers...) is in Christmas whatever its type, then Easter
       (Easter, chicks, bunnies).
    3. *Product types*, roughly from the most specific to the most general, each with
       its keywords:

       - Party & Baking - party, birthday, cake cases and stands, baking, bunting,
         napkins, doilies, paper cups and plates, straws, confetti, sweets, flags.
       - Tea & Coffee - tea, teapots, teacups, coffee, mugs, saucers, sugar, beakers.
       - Kitchen & Dining - kitchen, plates, bowls, cutlery, jugs, trays, jam, pantry,
         recipe, picnic, bottles, dishes, jars, lunch boxes, glasses, cups.
       - Candles & Lighting - candles, lanterns, lamps, lights, incense, matches.
       - Cards, Stationery & Gift Wrap - cards, wrapping paper, gift tags, ribbons,
         notebooks, pencils, pens, stickers, tape, calendars, tissues, paper.
       - Toys & Games - toys, games, jigsaws, dolls, dominoes, kites, children's and
         baby things, craft and sewing kits, spaceboy, ninja, money boxes.
       - Jewellery & Accessories - necklaces, bracelets, earrings, rings, charms,
         beads, brooches, purses, wallets, umbrellas, scarves, badges, hand warmers.
       - Bags & Storage - bags, totes, shoppers, baskets, boxes, tins, drawers, cases,
         hampers, buckets, pegs.
       - Signs & Frames - signs, plaques, photo frames, pictures, magnets, chalk
         boards, tiles, letters.
       - Home Decor - hooks, hangers, vases, ornaments, decorations, garlands, wreaths,
         blankets, cushions, clocks, mirrors, doorstops, bathroom, towels, soap, wicker.
       - Garden & Outdoor - garden, plants and pots, herbs, seeds, parasols, gnomes,
         thermometers, doormats, wind chimes, bird feeders, hammocks.
    4. *Motifs* with no product type (hearts, stars, flowers, birds, butterflies, cats,
       dogs...): such names are mostly hanging or standing decorations, so they go to
       Home Decor.

    Names that match nothing fall back to "Gifts & Other" (about 1% of the products:
    fly swats, paperweights of odd shapes, novelty items).

    On the full data set this gives 14 categories of 30 to 610 products each.

Edit :data:`RULES` to change the categories; the loader reports the count of each.
"""

import re

from django.utils.text import slugify
from django.utils.translation import gettext_noop

FALLBACK = "Gifts & Other"

#: Ordered (category, keywords) rules: the first rule with a matching keyword wins.
#: A category may appear in several rules (early specific phrases, later broad words).
RULES = [
    # 1. Specific phrases that a broader rule further down would misfile.
    ("Kitchen & Dining", ["TEA TOWEL", "NAPKIN RING", "EGG CUP", "EGG HOLDER", "EGG COSY",
                          "TEA COSY", "OVEN GLOVE", "OVEN MITT", "APRON", "CAKE TIN", "BREAD BIN",
                          "BISCUIT TIN", "BISCUIT CUTTER", "LUNCH BOX", "SNACK BOX", "LUNCH BAG",
                          "PICNIC BASKET", "FOOD COVER", "JAM MAKING", "SPICE", "TABLECLOTH",
                          "TABLE CLOTH", "UTENSIL", "PLATTER", "COOKING SET", "CHAMPAGNE GLASS",
                          "APERITIF GLASS", "WINE GLASS", "TEA GLASS", "CHALICE", "D.O.F",
                          "MILKSHAKE GLASS", "FRUITBOWL", "TOASTRACK", "POPCORN", "COCKTAIL"]),
    ("Jewellery & Accessories", ["KEY RING", "KEYRING", "KEY CHAIN", "KEY FOB", "BAG CHARM",
                                 "PHONE CHARM", "PASSPORT COVER", "CARD WALLET", "CARD HOLDER",
                                 "HAIR", "SHOULDER BAG", "HANDBAG", "COMPACT MIRROR", "JEWELLERY",
                                 "NECKL", "LARIAT", "HAIRCLIP", "EARRING", "BRACLET", "LIP GLOSS"]),
    ("Home Decor", ["HOT WATER BOTTLE", "DOOR STOP", "DOORSTOP", "COAT RACK", "COAT HANGER",
                    "CUSHION", "FILLER PAD", "TISSUE BOX", "WASHBAG", "WASH BAG", "SOAP",
                    "TRINKET POT", "TRINKET BOX", "UMBRELLA STAND", "MIRROR", "CABINET",
                    "DRAWER KNOB", "CLOCK", "POUFFE", "FLYING DUCKS", "IRONING BOARD", "FLANNEL",
                    "SHOWER CAP", "SQUARECUSHION"]),
    ("Toys & Games", ["PLAYING CARD", "PARTY BAG", "SEWING KIT", "KNITTING", "FELTCRAFT",
                      "FELT CRAFT", "CRAFT KIT", "COLOURING", "COLORING", "MODELLING",
                      "WRITING SET", "BABY GIFT SET", "PAINT SET", "TOOL SET", "FARM ANIMAL",
                      "DINOSAUR", "PLAYHOUSE", "TATTOO"]),
    ("Cards, Stationery & Gift Wrap", ["BIRTHDAY CARD", "GREETING CARD", "PARTY INVITE",
                                       "GIFT TAG", "PEN", "PENCIL", "SHARPENER", "ERASER",
                                       "NOTEBOOK", "STICKER"]),
    ("Candles & Lighting", ["CANDLE HOLDER", "T-LIGHT", "TLIGHT", "TEA LIGHT", "NIGHT LIGHT",
                            "FAIRY LIGHT", "LIGHT GARLAND", "STRING LIGHT", "LIGHTS",
                            "CANDLEPOT", "CHOCOLATECANDLE"]),
    ("Garden & Outdoor", ["BIRD FEEDER", "BIRD HOUSE", "BIRDHOUSE", "BIRD TABLE", "PLANT POT",
                          "FLOWER POT", "FLOWERPOT", "HERB MARKER", "WATERING CAN", "WIND CHIME",
                          "WINDCHIME", "GARDEN SET"]),
    ("Signs & Frames", ["METAL SIGN", "DOOR SIGN", "WALL ART", "PHOTO FRAME", "PICTURE FRAME",
                        "NUMBER TILE", "WOOD LETTERS", "WALL PLAQUE"]),
    # 2. Seasons: anything Christmas (or Easter), whatever the product type.
    ("Christmas", ["CHRISTMAS", "XMAS", "ADVENT", "SANTA", "REINDEER", "SNOWFLAKE", "SNOWMAN",
                   "SNOW", "BAUBLE", "NATIVITY", "ANGEL", "TREE DECORATION", "TINSEL", "NOEL",
                   "STOCKING", "ICICLE", "CRACKER", "HOLLY", "MISTLETOE", "JINGLE"]),
    ("Easter", ["EASTER", "CHICK", "CHICKS", "BUNNY", "BUNNIES", "EGG HUNT", "HANGING EGG"]),
    # 3. Product types, roughly from the most specific to the most general.
    ("Party & Baking", ["PARTY", "BIRTHDAY", "CAKE", "CAKES", "CAKESTAND", "CUPCAKE", "BAKING",
                        "BAKE", "MUFFIN", "COOKIE CUTTER", "ICING", "BUNTING", "NAPKIN",
                        "DOILY", "DOILIES", "PAPER CUP", "PAPER PLATE", "STRAW", "CONFETTI",
                        "BALLOON", "PINATA", "CANDY", "SWEETS", "LOLLY", "LOLLIES",
                        "CHOCOLATE", "PAPER CHAIN", "MOULD", "ROLLING PIN", "SPRINKLE",
                        "PENNANT", "FLAG"]),
    ("Tea & Coffee", ["TEA", "TEAPOT", "TEACUP", "COFFEE", "MUG", "SAUCER", "SUGAR",
                      "ESPRESSO", "CAFETIERE", "MILK JUG", "BEAKER", "CADDY"]),
    ("Kitchen & Dining", ["KITCHEN", "PLATE", "BOWL", "CUTLERY", "SPOON", "FORK", "KNIFE",
                          "JUG", "TRAY", "CHOPPING BOARD", "JAM", "PANTRY", "RECIPE", "PICNIC",
                          "BOTTLE", "TUMBLER", "DISH", "DINNER", "BREAKFAST", "SALT", "PEPPER",
                          "COLANDER", "SCALES", "WASHING UP", "PLACEMAT", "PLACE SETTING",
                          "COASTER", "GLASSES", "WINE", "PAN", "JAR", "JELLY", "FOOD", "LUNCH",
                          "GROCERY", "CHOPSTICK", "MELAMINE", "SQUEEZER", "GRATER", "DRINKS",
                          "MEASURING", "BIB", "CUP", "BASIN", "CHEESE", "BUTTER", "COOK"]),
    ("Candles & Lighting", ["CANDLE", "CANDLESTICK", "LANTERN", "LAMP", "LAMPSHADE", "LIGHT",
                            "LIGHTBULB", "CHANDELIER", "INCENSE", "OIL BURNER", "TORCH",
                            "DISCO BALL", "MATCHES"]),
    ("Cards, Stationery & Gift Wrap", [
        "CARD", "GREETING", "WRAP", "WRAPPING", "GIFT TAG", "TAGS", "RIBBON", "GIFT BAG",
        "NOTEBOOK", "NOTE BOOK", "NOTEPAD", "NOTE PAD", "NOTELET", "PENCIL", "PEN", "ERASER",
        "RUBBER", "STICKER", "TAPE", "JOURNAL", "DIARY", "CALENDAR", "ENVELOPE", "MEMO",
        "STATIONERY", "CHALK", "STAMP", "RULER", "SHARPENER", "SCISSOR", "PAPER", "TISSUE",
        "BOOK", "BOOKMARK", "ORGANISER", "POSTCARD", "LETTER RACK", "CLIPBOARD", "CRAYON",
        "ADDRESS", "ALBUM", "SCRAP", "GLITTER", "GIFT BOX", "SKETCHBOOK", "PAPERWEIGHT"]),
    ("Toys & Games", ["TOY", "GAME", "JIGSAW", "PUZZLE", "DOLL", "DOMINOES", "DOMINO", "KITE",
                      "SKIPPING ROPE", "MARBLES", "BUBBLES", "SPINNING TOP", "WATER PISTOL",
                      "TEDDY", "SOLDIER", "CHILDRENS", "CHILDS", "CHILDREN", "KIDS", "BABY",
                      "BUILDING BLOCK", "BLOCK", "PUPPET", "RATTLE", "YO YO", "YOYO",
                      "HARMONICA", "DRUM", "WHISTLE", "TRAIN", "ROCKET", "SPACEBOY", "NINJA",
                      "ALPHABET", "SNAKES", "LADDERS", "BINGO", "SKITTLES", "HULA", "BALL",
                      "SLINKY", "MAGNETIC", "SEWING", "CRAFT", "DRAWING", "HELICOPTER",
                      "GLIDER", "FLYING DISC", "INFLATABLE", "LUDO", "NAUGHTS", "NOUGHTS",
                      "CREEPY CRAWLIE", "PIECE SNAKE", "MONSTER", "PIGGY BANK", "MONEY BOX",
                      "RADIO", "CROQUET", "ROUNDERS", "WINDMILL", "ROCKING HORSE"]),
    ("Jewellery & Accessories", ["NECKLACE", "BRACELET", "EARRINGS", "RING", "CHARM", "BEAD",
                                 "BROOCH", "PENDANT", "BANGLE", "DIAMANTE", "CRYSTAL", "JEWEL",
                                 "JEWELLED", "JEWELRY", "CHOKER", "PURSE", "WALLET",
                                 "UMBRELLA", "SCARF", "GLOVES", "SOCK", "SLIPPER", "BADGE",
                                 "SUNGLASSES", "COMPACT", "CLIP", "SLIDE", "HANDWARMER",
                                 "HAND WARMER", "MAKE UP", "MAKEUP", "LIPSTICK", "TIARA", "BOW",
                                 "HAT", "PONCHO", "PATCHES", "ANKLET", "CUFF", "LOCKET", "FAN",
                                 "EAR MUFF", "HEADPHONES"]),
    ("Bags & Storage", ["BAG", "TOTE", "SHOPPER", "BACKPACK", "RUCKSACK", "BASKET", "BOX",
                        "BOXES", "STORAGE", "DRAWER", "TIN", "CASE", "HAMPER", "CRATE",
                        "TRUNK", "CHEST", "BUCKET", "POUCH", "TIDY", "HOLDALL", "SHOPPING",
                        "SUITCASE", "LUGGAGE", "PANNIER", "TRUG", "ORGANISER", "WASTE", "BIN",
                        "CONTAINER", "PEG", "PEGS", "FIRST AID KIT"]),
    ("Signs & Frames", ["SIGN", "PLAQUE", "FRAME", "PHOTO", "PICTURE", "POSTER", "PRINT",
                        "MAGNET", "CHALKBOARD", "BLACKBOARD", "MEMO BOARD", "NOTICE BOARD",
                        "CORK BOARD", "TILE", "LETTERS", "LETTER", "WORD", "SLATE", "PORTRAIT",
                        "CANVAS", "HOME SWEET HOME"]),
    ("Home Decor", ["HOOK", "HANGER", "VASE", "ORNAMENT", "DECORATION", "GARLAND", "WREATH",
                    "QUILT", "THROW", "BLANKET", "CURTAIN", "RUG", "KNOB", "SHELF", "TRINKET",
                    "BATHROOM", "TOWEL", "CHAIR", "TABLE", "DOOR", "STAND", "RACK", "HANGING",
                    "BELL", "FEATHER", "BOUQUET", "LAVENDER", "SCENT", "SCENTED", "DIFFUSER",
                    "POMANDER", "WICKER", "BIRDCAGE", "CAGE", "CANDELABRA", "SCULPTURE",
                    "STATUE", "FIGURE", "BUDDHA", "HOME", "MOBILE", "DECORATIVE", "SCREEN",
                    "WALL", "WINDOW", "BEDROOM", "BED", "PILLOW", "BATH", "SPONGE", "TOILET",
                    "COSMETIC", "STOOL", "MAT", "CROCHET", "EMBROIDERED", "CUBE", "DEC",
                    "DECO", "LOVE SEAT", "TOADSTOOL", "MUSHROOM", "BASE", "WINDSOCK"]),
    ("Garden & Outdoor", ["GARDEN", "GARDENERS", "PLANT", "PLANTER", "HERB", "SEED", "PARASOL",
                          "GNOME", "THERMOMETER", "DOORMAT", "HOSE", "GREENHOUSE", "CLOCHE",
                          "POT", "WATERING", "TRELLIS", "BIRDBATH", "OUTDOOR", "CHIME", "SHED",
                          "FENCE", "HAMMOCK", "DECKCHAIR", "BEACH", "SECATEURS", "DOVECOTE"]),
    # 4. Motifs with no product type: they are mostly hanging or standing decorations.
    ("Home Decor", ["HEART", "STAR", "FLOWER", "BIRD", "BUTTERFLY", "BUTTERFLIES", "ROSE", "DOVE", "HEN",
                    "PARROT", "OWL", "CAT", "DOG", "RABBIT", "FROG", "ANGEL", "LOVE"]),
]

#: Every category, alphabetically, then the fallback.
CATEGORY_NAMES = sorted({name for name, _ in RULES}) + [FALLBACK]

# The names are stored in English (they are the categories' keys); the storefront shows
# them translated (``Category.display_name``). Listed here for makemessages.
_TRANSLATED_NAMES = [
    gettext_noop("Bags & Storage"), gettext_noop("Candles & Lighting"),
    gettext_noop("Cards, Stationery & Gift Wrap"), gettext_noop("Christmas"), gettext_noop("Easter"),
    gettext_noop("Garden & Outdoor"), gettext_noop("Gifts & Other"), gettext_noop("Home Decor"),
    gettext_noop("Jewellery & Accessories"), gettext_noop("Kitchen & Dining"),
    gettext_noop("Party & Baking"), gettext_noop("Signs & Frames"), gettext_noop("Tea & Coffee"),
    gettext_noop("Toys & Games"),
]


def _pattern(keyword):
    # Whole words only; spaces and hyphens inside a phrase are interchangeable; a plural
    # "S"/"ES" is allowed at the end.
    parts = [re.escape(part) for part in re.split(r"[\s\-]+", keyword.strip().upper())]
    body = r"[\s\-]*".join(parts)
    return rf"(?<![A-Z0-9]){body}(?:S|ES)?(?![A-Z0-9])"


_COMPILED = [(name, re.compile("|".join(_pattern(k) for k in keywords))) for name, keywords in RULES]


def categorize(description):
    """The category name for a product name (the first matching rule, else the fallback)."""
    text = (description or "").upper()
    for name, regex in _COMPILED:
        if regex.search(text):
            return name
    return FALLBACK


def category_slug(name):
    """URL slug of a category name ("Tea & Coffee" -> "tea-coffee")."""
    return slugify(name)
