/opt/engine/bin/lmcache server \
    --host 127.0.0.1 \
    --port 41001 \
    --http-host 127.0.0.1 \
    --http-port 41002 \
    --l1-size-gb 512 \
    --eviction-policy LRU \
    --chunk-size 256

CUDA_VISIBLE_DEVICES=0 \
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

CUDA_VISIBLE_DEVICES=1 \
    DO_NOT_TRACK=1 \
    VLLM_API_KEY=INTERNAL-KEY \
    VLLM_NO_USAGE_STATS=1 \
    /opt/engine/bin/vllm serve MODEL \
    --served-model-name meta-llama/llama-3.1-8b-instruct \
    --host 127.0.0.1 \
    --port 41010 \
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

CUDA_VISIBLE_DEVICES=2 \
    DO_NOT_TRACK=1 \
    VLLM_API_KEY=INTERNAL-KEY \
    VLLM_NO_USAGE_STATS=1 \
    /opt/engine/bin/vllm serve MODEL \
    --served-model-name meta-llama/llama-3.1-8b-instruct \
    --host 127.0.0.1 \
    --port 41011 \
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

CUDA_VISIBLE_DEVICES=3 \
    DO_NOT_TRACK=1 \
    VLLM_API_KEY=INTERNAL-KEY \
    VLLM_NO_USAGE_STATS=1 \
    /opt/engine/bin/vllm serve MODEL \
    --served-model-name meta-llama/llama-3.1-8b-instruct \
    --host 127.0.0.1 \
    --port 41012 \
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

CUDA_VISIBLE_DEVICES=4 \
    DO_NOT_TRACK=1 \
    VLLM_API_KEY=INTERNAL-KEY \
    VLLM_NO_USAGE_STATS=1 \
    /opt/engine/bin/vllm serve MODEL \
    --served-model-name meta-llama/llama-3.1-8b-instruct \
    --host 127.0.0.1 \
    --port 41013 \
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

CUDA_VISIBLE_DEVICES=5 \
    DO_NOT_TRACK=1 \
    VLLM_API_KEY=INTERNAL-KEY \
    VLLM_NO_USAGE_STATS=1 \
    /opt/engine/bin/vllm serve MODEL \
    --served-model-name meta-llama/llama-3.1-8b-instruct \
    --host 127.0.0.1 \
    --port 41014 \
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

CUDA_VISIBLE_DEVICES=6 \
    DO_NOT_TRACK=1 \
    VLLM_API_KEY=INTERNAL-KEY \
    VLLM_NO_USAGE_STATS=1 \
    /opt/engine/bin/vllm serve MODEL \
    --served-model-name meta-llama/llama-3.1-8b-instruct \
    --host 127.0.0.1 \
    --port 41015 \
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

CUDA_VISIBLE_DEVICES=7 \
    DO_NOT_TRACK=1 \
    VLLM_API_KEY=INTERNAL-KEY \
    VLLM_NO_USAGE_STATS=1 \
    /opt/engine/bin/vllm serve MODEL \
    --served-model-name meta-llama/llama-3.1-8b-instruct \
    --host 127.0.0.1 \
    --port 41016 \
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

/opt/engine/bin/vllm-router \
    --host 127.0.0.1 \
    --port 41020 \
    --worker-urls http://127.0.0.1:41000 http://127.0.0.1:41010 http://127.0.0.1:41011 http://127.0.0.1:41012 http://127.0.0.1:41013 http://127.0.0.1:41014 http://127.0.0.1:41015 http://127.0.0.1:41016 \
    --policy cache_aware \
    --prometheus-host 127.0.0.1 \
    --prometheus-port 41021 \
    --health-check-interval-secs 5
