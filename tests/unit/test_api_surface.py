import converter


def test_public_api_names_resolve():
    for name in converter.__all__:
        assert getattr(converter, name) is not None, name
    for fn in ("export", "optimize", "validate", "inspect", "load"):
        assert callable(getattr(converter, fn))
