TMPDIR=/cache/tmp \
    /opt/engine/bin/lmcache server \
    --host 127.0.0.1 \
    --port 41001 \
    --http-host 127.0.0.1 \
    --http-port 41002 \
    --l1-size-gb 2 \
    --eviction-policy LRU \
    --chunk-size 256

DO_NOT_TRACK=1 \
    HF_HUB_OFFLINE=1 \
    TMPDIR=/cache/tmp \
    VLLM_API_KEY=INTERNAL-KEY \
    VLLM_NO_USAGE_STATS=1 \
    /opt/engine/bin/vllm serve /models/the-model \
    --served-model-name smollm2-135m-instruct \
    --host 127.0.0.1 \
    --port 41000 \
    --max-model-len 4096 \
    --dtype float32 \
    --max-num-seqs 16 \
    --max-num-batched-tokens 4096 \
    --kv-cache-memory-bytes 1073741824 \
    --enforce-eager \
    --enable-prompt-tokens-details \
    --kv-transfer-config '{"kv_connector":"LMCacheMPConnector","kv_role":"kv_both","kv_connector_extra_config":{"lmcache.mp.host":"tcp://127.0.0.1","lmcache.mp.port":41001,"lmcache.mp.mp_transfer_mode":"lmcache_driven"}}'

DO_NOT_TRACK=1 \
    HF_HUB_OFFLINE=1 \
    TMPDIR=/cache/tmp \
    VLLM_API_KEY=INTERNAL-KEY \
    VLLM_NO_USAGE_STATS=1 \
    /opt/engine/bin/vllm serve /models/the-model \
    --served-model-name smollm2-135m-instruct \
    --host 127.0.0.1 \
    --port 41010 \
    --max-model-len 4096 \
    --dtype float32 \
    --max-num-seqs 16 \
    --max-num-batched-tokens 4096 \
    --kv-cache-memory-bytes 1073741824 \
    --enforce-eager \
    --enable-prompt-tokens-details \
    --kv-transfer-config '{"kv_connector":"LMCacheMPConnector","kv_role":"kv_both","kv_connector_extra_config":{"lmcache.mp.host":"tcp://127.0.0.1","lmcache.mp.port":41001,"lmcache.mp.mp_transfer_mode":"lmcache_driven"}}'

/opt/engine/bin/vllm-router \
    --host 127.0.0.1 \
    --port 41020 \
    --worker-urls http://127.0.0.1:41000 http://127.0.0.1:41010 \
    --policy cache_aware \
    --prometheus-host 127.0.0.1 \
    --prometheus-port 41021 \
    --health-check-interval-secs 5
