"""The model provider: everything that speaks the OpenAI chat-completions wire format.

- `client`: the `openai` client for the configured endpoint (or the demo model),
  and what users and staff read when the provider fails;
- `prompt`: what the model is sent, built from the stored conversation;
- `stream`: the request as the wire format, the streamed body read as chunks
  within size limits;
- `wire`: the chunks of the streaming format as a server writes them (the demo
  model and the test stub speak it);
- `demo`: the offline demo model, a transport that answers like a provider.

Nothing here knows about events, pages or how answers are stored.
"""
