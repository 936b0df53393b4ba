"""Chat sessions for ``infer chat``: conversation, its file format, slash commands, per-answer
figures. No terminal code here (that lives in ``infer_cli.ui``).
"""
