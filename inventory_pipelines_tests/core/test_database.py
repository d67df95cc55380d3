from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from inventory_pipelines.core.database import create_inventory_engine
from inventory_pipelines.core.errors import ConfigurationError


def test_a_missing_sqlite_file_is_not_created_when_asked_not_to(tmp_path: Path) -> None:
    path = tmp_path / "state" / "inventory.db"
    with pytest.raises(ConfigurationError, match=r"does not exist; create it with .*db upgrade"):
        create_inventory_engine(f"sqlite:///{path}", create_sqlite_file=False)
    assert not (tmp_path / "state").exists()


def test_an_existing_file_is_opened_but_never_recreated(tmp_path: Path) -> None:
    path = tmp_path / "odd #name%.db"
    creating = create_inventory_engine(f"sqlite:///{path}")  # the default creates it
    creating.connect().close()
    creating.dispose()
    engine = create_inventory_engine(f"sqlite:///{path}", create_sqlite_file=False)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
    engine.dispose()
    for leftover in tmp_path.iterdir():
        leftover.unlink()
    with pytest.raises(OperationalError, match="unable to open"):
        engine.connect()
    assert list(tmp_path.iterdir()) == []
