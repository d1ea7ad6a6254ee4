import sys

from components import source_fingerprint


def test_fingerprint_follows_the_step_folder_and_the_shared_modules(tmp_path, monkeypatch):
    package = tmp_path / "components"
    (package / "step").mkdir(parents=True)
    for name in ("__init__.py", "features.py", "evaluation_contract.py", "stack.py",
                 "step/__init__.py", "step/code.py", "step/code_test.py"):
        (package / name).write_text(f"# {name}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "components")
    for name in [m for m in sys.modules if m.startswith("components.")]:
        monkeypatch.delitem(sys.modules, name)

    def fingerprint():
        return source_fingerprint.step_source_fingerprint("components.step.code.run")

    original = fingerprint()
    assert fingerprint() == original
    (package / "step" / "code_test.py").write_text("# tests do not count\n")
    assert fingerprint() == original
    for edited in ("step/code.py", "features.py", "evaluation_contract.py"):
        (package / edited).write_text("# edited\n")
        assert fingerprint() != original
        original = fingerprint()
