"""Public LLM traces: parse them into (arrival time, input tokens, output tokens) rows, replay, summarize, fit."""
