"""connectrpc codecs for Google-protobuf generated classes.

connectrpc 0.13 is built on protobuf-py and its default codecs call ``to_binary`` /
``to_json`` on its own message classes. Our messages are Google protobuf's (the same
classes the gRPC services use), so the edge gives connectrpc these two codecs instead of a
second generated Python code:

- ``proto``: ``SerializeToString`` / ``FromString``;
- ``json``: protojson as Connect expects it, via ``google.protobuf.json_format``: field
  names in lowerCamelCase on output, either spelling accepted on input, default values
  omitted, enum values by name, unknown fields ignored (a newer client's field is not an
  error, as in binary).

A decode failure raises; connectrpc answers it INVALID_ARGUMENT ("unmarshal message: ...").
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message


class GoogleProtoBinaryCodec:
    def name(self) -> str:
        return "proto"

    def encode(self, message: Message) -> bytes:
        return message.SerializeToString()

    def decode(self, data: bytes | bytearray, message_class: type[Any]) -> Any:
        return message_class.FromString(bytes(data))


class GoogleProtoJSONCodec:
    def name(self) -> str:
        return "json"

    def encode(self, message: Message) -> bytes:
        return json_format.MessageToJson(message, indent=None).encode()

    def decode(self, data: bytes | bytearray, message_class: type[Any]) -> Any:
        message = message_class()
        json_format.Parse(bytes(data) or b"{}", message, ignore_unknown_fields=True)
        return message


CODECS = (GoogleProtoBinaryCodec(), GoogleProtoJSONCodec())
