"""The peer: FastAPI with fastapi-users (its SQLAlchemy user database on the asyncpg driver) under uvicorn
with uvloop and httptools, one worker, as its documentation sets it up. Runs in its own virtualenv
(bench/peer/requirements.txt), so it imports nothing of userservice.

    python bench/peer/server.py DSN POOL_SIZE ADMIN_EMAIL ADMIN_PASSWORD

At start it makes its own table (peer_users: fastapi-users' columns plus the profile fields userservice has),
copies the seeded users into it (same ids, same rows), adds one superuser, then prints a JSON line with its port.
  GET /v1/users/{id}   a user by id through SQLAlchemyUserDatabase.get, no authentication
  GET /users/{id}      fastapi-users' own users router: the caller must be an active superuser (JWT strategy)
  POST /auth/jwt/login fastapi-users' login (form: username, password) -> a JWT
"""

from __future__ import annotations

import json
import socket
import sys
import uuid
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from datetime import datetime

import uvicorn
from fastapi import Depends, FastAPI, HTTPException
from fastapi_users import BaseUserManager, FastAPIUsers, UUIDIDMixin, schemas
from fastapi_users.authentication import AuthenticationBackend, BearerTransport, JWTStrategy
from fastapi_users.password import PasswordHelper
from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTableUUID, SQLAlchemyUserDatabase
from sqlalchemy import DateTime, Integer, String, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SECRET = "bench-peer-jwt-secret-" + uuid.uuid4().hex  # a fresh signing key per run


class Base(DeclarativeBase):
    pass


class User(SQLAlchemyBaseUserTableUUID, Base):
    __tablename__ = "peer_users"
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    nickname: Mapped[str] = mapped_column(String(64), unique=True)
    country: Mapped[str] = mapped_column(String(2))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer, default=1)


class UserRead(schemas.BaseUser[uuid.UUID]):
    first_name: str
    last_name: str
    nickname: str
    country: str
    created_at: datetime
    updated_at: datetime
    version: int


class UserUpdate(schemas.BaseUserUpdate):
    pass


def main(dsn: str, pool_size: int, admin_email: str, admin_password: str) -> None:
    engine = create_async_engine(
        dsn.replace("postgresql://", "postgresql+asyncpg://", 1), pool_size=pool_size, max_overflow=0
    )
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def get_session() -> AsyncGenerator[AsyncSession, None]:
        async with sessions() as session:
            yield session

    async def get_user_db(
        session: AsyncSession = Depends(get_session),  # noqa: B008 (FastAPI's dependency idiom)
    ) -> AsyncGenerator[SQLAlchemyUserDatabase[User, uuid.UUID], None]:
        yield SQLAlchemyUserDatabase(session, User)

    class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
        reset_password_token_secret = SECRET
        verification_token_secret = SECRET

    async def get_user_manager(
        user_db: SQLAlchemyUserDatabase[User, uuid.UUID] = Depends(get_user_db),  # noqa: B008
    ) -> AsyncGenerator[UserManager, None]:
        yield UserManager(user_db)

    def get_jwt_strategy() -> JWTStrategy[User, uuid.UUID]:
        return JWTStrategy(secret=SECRET, lifetime_seconds=3600)

    backend = AuthenticationBackend(
        name="jwt", transport=BearerTransport(tokenUrl="auth/jwt/login"), get_strategy=get_jwt_strategy
    )
    users = FastAPIUsers[User, uuid.UUID](get_user_manager, [backend])

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncGenerator[None, None]:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
            await conn.execute(
                text(
                    "INSERT INTO peer_users (id, email, hashed_password, is_active, is_superuser, is_verified,"
                    " first_name, last_name, nickname, country, created_at, updated_at, version)"
                    " SELECT id, email, password_hash, true, false, true, first_name, last_name, nickname,"
                    " country, created_at, updated_at, version FROM users ON CONFLICT DO NOTHING"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO peer_users (id, email, hashed_password, is_active, is_superuser, is_verified,"
                    " first_name, last_name, nickname, country, created_at, updated_at, version)"
                    " VALUES (:id, :email, :hash, true, true, true, 'Admin', 'Admin', 'peer-admin', 'GB',"
                    " now(), now(), 1) ON CONFLICT DO NOTHING"
                ),
                {"id": uuid.uuid4(), "email": admin_email, "hash": PasswordHelper().hash(admin_password)},
            )
        print(json.dumps({"message": "serving", "port": sock.getsockname()[1]}), flush=True)
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/v1/users/{user_id}", response_model=UserRead)
    async def get_user(
        user_id: uuid.UUID,
        user_db: SQLAlchemyUserDatabase[User, uuid.UUID] = Depends(get_user_db),  # noqa: B008
    ) -> User:
        user = await user_db.get(user_id)
        if user is None:
            raise HTTPException(status_code=404)
        return user

    app.include_router(users.get_auth_router(backend), prefix="/auth/jwt")
    app.include_router(users.get_users_router(UserRead, UserUpdate), prefix="/users")

    config = uvicorn.Config(app, loop="uvloop", http="httptools", workers=1, log_level="info")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4])
