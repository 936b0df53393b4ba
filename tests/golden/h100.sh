/opt/engine/bin/lmcache server \
    --host 127.0.0.1 \
    --port 41001 \
    --http-host 127.0.0.1 \
    --http-port 41002 \
    --l1-size-gb 64 \
    --eviction-policy LRU \
    --chunk-size 256

DO_NOT_TRACK=1 \
    VLLM_API_KEY=INTERNAL-KEY \
    VLLM_NO_USAGE_STATS=1 \
    /opt/engine/bin/vllm serve MODEL \
    --served-model-name meta-llama/llama-3.1-8b-instruct \
    --host 127.0.0.1 \
    --port 41000 \
    --max-model-len 131072 \
    --dtype bfloat16 \
    --gpu-memory-utilization 0.92 \
    --max-num-seqs 256 \
    --max-num-batched-tokens 8192 \
    --tool-call-parser llama3_json \
    --enable-chunked-prefill \
    --enable-prompt-tokens-details \
    --enable-auto-tool-choice \
    --kv-transfer-config '{"kv_connector":"LMCacheMPConnector","kv_role":"kv_both","kv_connector_extra_config":{"lmcache.mp.host":"tcp://127.0.0.1","lmcache.mp.port":41001}}'
