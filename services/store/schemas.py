"""Request and response bodies of the HTTP API.

Requests are strict and forbid unknown fields, so a typo is a 422 naming the
field rather than a silently ignored value. Text with a lone surrogate is a
422 in every field (``store.text``). Ids use ``shared.ids.Id``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from shared.contracts.events import WidgetError, WidgetStatus
from shared.contracts.jobs import DEFAULT_TIMEOUT_S, MAX_TIMEOUT_S, WidgetResult
from shared.contracts.widget_output import WidgetOutput
from shared.ids import Id
from store.attributes import Attributes
from store.repositories.businesses import Business
from store.repositories.conversations import Conversation
from store.repositories.customers import Customer
from store.repositories.messages import Author, Message
from store.repositories.secrets import SecretEntry
from store.repositories.widgets import Widget
from store.text import refuse_lone_surrogates

Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
ShortText = Annotated[str, StringConstraints(max_length=320)]
Subject = Annotated[str, StringConstraints(max_length=2000)]
Position = Annotated[int, Field(ge=-1_000_000, le=1_000_000)]
TimeoutSeconds = Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S)]

MAX_CHAT_CONTENT = 4000
MAX_SECRET_VALUE = 4096
MAX_IMAGE_URL = 2000
_VISITOR_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")


def _visitor_id(value: str) -> str:
    if not _VISITOR_ID.fullmatch(value):
        raise PydanticCustomError("visitor_id", "expected 16-64 characters from A-Z, a-z, 0-9, '_' and '-'")
    return value


# The validator words the error; the schema documents the same rule.
VisitorId = Annotated[
    str, AfterValidator(_visitor_id), WithJsonSchema({"type": "string", "pattern": "^[A-Za-z0-9_-]{16,64}$"})
]
"""The chat widget's random id for one browser; knowing it is what lets a visitor read their messages."""


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _valid_unicode(cls, value: object) -> object:
        return refuse_lone_surrogates(value)


class ErrorResponse(BaseModel):
    detail: str


class CodeCheckErrorResponse(BaseModel):
    detail: str
    line: int | None = Field(
        default=None, description="1-based line the problem is on, when it has one; absent on schema violations"
    )


class CreateBusinessRequest(_Request):
    business_id: Id
    name: Name


class BusinessResponse(BaseModel):
    business_id: str
    name: str
    created_at: datetime

    @classmethod
    def of(cls, business: Business) -> Self:
        return cls(business_id=business.business_id, name=business.name, created_at=business.created_at)


class CreatedBusinessResponse(BusinessResponse):
    api_key: str = Field(description="The business's first key; shown only once")


class ApiKeyResponse(BaseModel):
    api_key: str = Field(description="Shown only once; only its hash is stored")


class CustomerRequest(_Request):
    email: ShortText | None = None
    name: ShortText | None = None
    phone: ShortText | None = None
    attributes: Attributes = Field(default_factory=dict)


class CustomerResponse(BaseModel):
    business_id: str
    customer_id: str
    email: str | None
    name: str | None
    phone: str | None
    attributes: dict[str, Any]
    updated_at: datetime

    @classmethod
    def of(cls, customer: Customer) -> Self:
        return cls(
            business_id=customer.business_id,
            customer_id=customer.customer_id,
            updated_at=customer.updated_at,
            **vars(customer.fields),
        )


class ConversationRequest(_Request):
    public_id: Id | None = None
    customer_id: Id | None = None
    channel: ShortText | None = None
    subject: Subject | None = None
    status: ShortText | None = None
    attributes: Attributes = Field(default_factory=dict)


class ConversationResponse(BaseModel):
    business_id: str
    conversation_id: str
    public_id: str | None
    customer_id: str | None
    channel: str | None
    subject: str | None
    status: str | None
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, conversation: Conversation) -> Self:
        return cls(
            business_id=conversation.business_id,
            conversation_id=conversation.conversation_id,
            created_at=conversation.created_at,
            updated_at=conversation.updated_at,
            **vars(conversation.fields),
        )


class OpenConversationRequest(_Request):
    agent_id: Id | None = None


class OpenedResponse(BaseModel):
    event_id: str


class WidgetCreateRequest(_Request):
    widget_id: Id | None = Field(default=None, description="Generated when absent")
    name: Name
    code: str
    active: bool = True
    position: Position = 0
    timeout_s: TimeoutSeconds = DEFAULT_TIMEOUT_S


class WidgetPatchRequest(_Request):
    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    name: Name | None = None
    code: str | None = None
    active: bool | None = None
    position: Position | None = None
    timeout_s: TimeoutSeconds | None = None

    @field_validator("name", "code", "active", "position", "timeout_s")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise PydanticCustomError("null_forbidden", "must not be null; leave the field out to keep its value")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if not self.model_fields_set:
            raise PydanticCustomError("empty_patch", "provide at least one of name, code, active, position, timeout_s")
        return self


class WidgetResponse(BaseModel):
    business_id: str
    widget_id: str
    name: str
    code: str
    active: bool
    position: int
    timeout_s: float
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, widget: Widget) -> Self:
        return cls(**vars(widget))


class TestRunRequest(_Request):
    __test__ = False  # the name starts with "Test"; pytest must not collect it

    conversation_id: Id | None = None
    public_id: Id | None = Field(default=None, description="Test against the conversation with this public id")
    code: str | None = Field(default=None, description="Unsaved code to test instead of the stored code")

    @model_validator(mode="after")
    def _one_conversation(self) -> Self:
        if (self.conversation_id is None) == (self.public_id is None):
            raise PydanticCustomError("conversation_choice", "give exactly one of conversation_id or public_id")
        return self


class TestRunResponse(BaseModel):
    __test__ = False

    status: WidgetStatus
    duration_ms: int
    data: WidgetOutput | None
    error: WidgetError | None
    logs: str
    logs_truncated: bool

    @classmethod
    def of(cls, result: WidgetResult) -> Self:
        return cls(
            status=result.status,
            duration_ms=result.duration_ms,
            data=result.data,
            error=result.error,
            logs=result.logs,
            logs_truncated=result.logs_truncated,
        )


class SecretRequest(_Request):
    # SecretStr keeps the value out of the model's repr and dumps (a traceback's locals show the model).
    value: SecretStr = Field(
        description=f"1-{MAX_SECRET_VALUE} characters; never returned by any route",
        json_schema_extra={"minLength": 1, "maxLength": MAX_SECRET_VALUE},
    )

    @field_validator("value")
    @classmethod
    def _length(cls, value: SecretStr) -> SecretStr:
        if not 1 <= len(value.get_secret_value()) <= MAX_SECRET_VALUE:
            raise PydanticCustomError(
                "secret_length", "must be 1-{maximum} characters long", {"maximum": MAX_SECRET_VALUE}
            )
        return value


class SecretResponse(BaseModel):
    name: str
    updated_at: datetime

    @classmethod
    def of(cls, entry: SecretEntry) -> Self:
        return cls(name=entry.name, updated_at=entry.updated_at)


class StreamTokenResponse(BaseModel):
    token: str = Field(description="Pass as `?token=` to the stream of this business")
    expires_at: datetime


class ChatMessageRequest(_Request):
    visitor_id: VisitorId
    content: str = Field(description=f"1-{MAX_CHAT_CONTENT} characters once surrounding whitespace is removed")
    image_url: str | None = Field(default=None, description=f"An http or https URL, at most {MAX_IMAGE_URL} characters")

    @field_validator("content")
    @classmethod
    def _content(cls, value: str) -> str:
        text = value.strip()
        if not text:
            raise PydanticCustomError("empty_content", "must not be empty")
        if len(text) > MAX_CHAT_CONTENT:
            raise PydanticCustomError(
                "content_too_long", "must be at most {maximum} characters", {"maximum": MAX_CHAT_CONTENT}
            )
        return text

    @field_validator("image_url")
    @classmethod
    def _image_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if len(value) > MAX_IMAGE_URL:
            raise PydanticCustomError(
                "url_too_long", "must be at most {maximum} characters", {"maximum": MAX_IMAGE_URL}
            )
        try:
            parts = urlsplit(value)
        except ValueError:
            parts = None
        if (
            parts is None
            or parts.scheme.lower() not in ("http", "https")
            or not parts.netloc
            or any(char.isspace() or not char.isprintable() for char in value)
        ):
            raise PydanticCustomError("http_url", "must be an http or https URL")
        return value


class ChatMessageCreatedResponse(BaseModel):
    message_id: str
    conversation_id: str
    created_at: datetime


class MessageResponse(BaseModel):
    message_id: str
    conversation_id: str
    author: Author
    content: str
    image_url: str | None
    created_at: datetime

    @classmethod
    def of(cls, message: Message) -> Self:
        return cls(
            message_id=message.message_id,
            conversation_id=message.conversation_id,
            author=message.author,
            content=message.content,
            image_url=message.image_url,
            created_at=message.created_at,
        )
