VLLM_API_KEY=INTERNAL-KEY \
    /opt/infer/bin/python -m infer_cli.sim \
    --host 127.0.0.1 \
    --port 41000 \
    --settings-json '{"first_token_ms":5.0}'
