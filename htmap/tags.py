"""Map tags: validated names, and random readable ones for transient maps."""
from __future__ import annotations

import random
import re

from . import exceptions

_VALID = re.compile(r"^[A-Za-z0-9_+=@,:-][A-Za-z0-9_.+=@,:-]*$")
MAX_LENGTH = 200

ADJECTIVES = (
    "agile amber ancient azure bold brave breezy bright brisk calm candid cheerful clever cosmic crisp "
    "curious daring dapper eager early earnest fancy fast fearless fierce fluffy frosty gentle giddy "
    "golden grand happy hardy hasty hidden humble icy jolly keen kind lively lucky mellow merry mighty "
    "misty modest nimble noble odd plucky polite proud quick quiet rapid rosy rustic shiny silent silly "
    "sleek snowy solar spry stable steady sturdy sunny swift tidy tiny vivid warm wild wise witty zesty"
).split()
NOUNS = (
    "badger beacon bison boson comet crane dingo dolphin eagle ember falcon ferret fjord gecko glacier "
    "gluon hadron heron ibex island jaguar kestrel koala lemur lynx magnet meadow meson meteor moose "
    "muon nebula newt ocelot orbit otter owl panda pebble photon pion puffin quark quasar raven river "
    "robin salmon sparrow squid tapir tiger toucan tundra turtle valley walrus wombat yak zebra"
).split()


def validate(tag: str) -> str:
    """Return the tag, or raise InvalidTag saying what is wrong with it."""
    if not isinstance(tag, str) or not tag:
        raise exceptions.InvalidTag(f"a tag must be a non-empty string, not {tag!r}")
    if len(tag) > MAX_LENGTH:
        raise exceptions.InvalidTag(f"tag is {len(tag)} characters long; the limit is {MAX_LENGTH}")
    if ".." in tag or not _VALID.match(tag):
        raise exceptions.InvalidTag(
            f"invalid tag {tag!r}: use letters, digits and - _ . + = @ , : (no spaces, '/', '..', "
            "control characters, or a leading '.')"
        )
    return tag


def random_tag(rng: random.Random = random.SystemRandom()) -> str:
    a, b = rng.sample(ADJECTIVES, 2)
    return f"{a}-{b}-{rng.choice(NOUNS)}"
