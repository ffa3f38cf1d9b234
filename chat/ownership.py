"""The one access rule: people reach only their own conversations and answers.

Every view that takes an id looks its object up here first, so another user's
object, or an id that does not exist, is the same 404."""

from django.db.models import QuerySet
from django.http import HttpRequest
from django.shortcuts import aget_object_or_404, get_object_or_404

from chat.models import Conversation, Message, ToolCall


def conversations_of(user) -> QuerySet[Conversation]:
    return Conversation.objects.filter(owner=user)


def _messages_of(user, conversation_id: int) -> QuerySet[Message]:
    return Message.objects.select_related("conversation").filter(
        conversation_id=conversation_id, conversation__owner=user
    )


def _answers_of(user, conversation_id: int) -> QuerySet[Message]:
    return _messages_of(user, conversation_id).filter(role=Message.Role.ASSISTANT)


def conversation_for(request: HttpRequest, conversation_id: int) -> Conversation:
    return get_object_or_404(conversations_of(request.user), pk=conversation_id)


async def aconversation_for(request: HttpRequest, conversation_id: int) -> Conversation:
    return await aget_object_or_404(conversations_of(await request.auser()), pk=conversation_id)


def answer_for(request: HttpRequest, conversation_id: int, message_id: int) -> Message:
    return get_object_or_404(_answers_of(request.user, conversation_id), pk=message_id)


async def aanswer_for(request: HttpRequest, conversation_id: int, message_id: int) -> Message:
    return await aget_object_or_404(_answers_of(await request.auser(), conversation_id), pk=message_id)


async def amessage_for(request: HttpRequest, conversation_id: int, message_id: int) -> Message:
    """A prompt or an answer."""
    return await aget_object_or_404(_messages_of(await request.auser(), conversation_id), pk=message_id)


async def aprompt_for(request: HttpRequest, conversation_id: int, message_id: int) -> Message:
    messages = _messages_of(await request.auser(), conversation_id).filter(role=Message.Role.USER)
    return await aget_object_or_404(messages, pk=message_id)


async def atool_call_for(request: HttpRequest, call_id: int) -> ToolCall:
    """A tool call of one of the user's answers."""
    calls = ToolCall.objects.filter(message__conversation__owner=await request.auser())
    return await aget_object_or_404(calls, pk=call_id)
