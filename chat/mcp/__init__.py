"""Tools from Model Context Protocol servers staff register in the admin: which
tools a user is offered (`catalog`), their names for the model (`names`), one
answer's sessions with the servers (`sessions`), what a tool's result becomes
(`results`), the tools of one answer, built-in and MCP, behind one interface
(`toolbox`), the user's approval of a call and a server switched off for one
conversation (`approval`, `views`), checking a server and listing its tools
(`discovery`), its headers and environment kept secret (`secrets`), and the
staff's pages (`admin`)."""
