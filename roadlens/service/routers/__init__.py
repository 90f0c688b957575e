"""The API's routers: sources (CRUD, recorder control), data (queries, media), live (WebSocket)."""
