"""Random JSON schemas of the structured output subset (docs/structured-output.md), for property tests."""

from __future__ import annotations

from hypothesis import strategies as st

KEY = st.text(alphabet='ab "\\şÜ:{', min_size=1, max_size=3)
JSON_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), st.text(alphabet='xy"\\\nç ', max_size=4))


def _with(kind: str, **optional: st.SearchStrategy) -> st.SearchStrategy:
    return st.fixed_dictionaries({"type": st.just(kind)}, optional=optional)


SCALARS = st.one_of(
    _with("string", minLength=st.integers(0, 2), maxLength=st.integers(2, 5)),
    _with("integer", minimum=st.integers(-60, 5), maximum=st.integers(6, 300)),
    _with("number", minimum=st.floats(-50, 0.5), maximum=st.floats(0.75, 80)),
    _with("boolean"),
    _with("null"),
    st.builds(lambda options: {"enum": options}, st.lists(JSON_SCALAR, min_size=1, max_size=3, unique=True)),
    st.builds(lambda value: {"const": value}, JSON_SCALAR),
)


def _object(members: st.SearchStrategy, most: int = 2) -> st.SearchStrategy:
    def build(properties: dict, flags: list[bool]) -> dict:
        required = [key for key, flag in zip(properties, flags) if flag]
        return {"type": "object", "properties": properties, "required": required}

    return st.dictionaries(KEY, members, min_size=0, max_size=most).flatmap(
        lambda properties: st.builds(build, st.just(properties), st.lists(st.booleans(), min_size=3, max_size=3))
    )


def _array(items: st.SearchStrategy) -> st.SearchStrategy:
    return st.builds(
        lambda item, low, extra: {"type": "array", "items": item, "minItems": low, "maxItems": low + extra},
        items,
        st.integers(0, 1),
        st.integers(0, 1),
    )


# small enough that prompt and skeleton fit the embedded model's context of 256 tokens
SCHEMAS = _object(st.recursive(SCALARS, lambda inner: st.one_of(_object(inner), _array(inner)), max_leaves=3), most=3)
