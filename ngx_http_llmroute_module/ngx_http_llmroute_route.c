
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * Provider and model selection: filter the catalog by what the request
 * needs, rank by estimated cost.  Pure computation over the catalog.
 */


#include <ngx_http_llmroute_core.h>


static uint64_t ngx_http_llmroute_prompt_cost(ngx_http_llmroute_model_t *m,
    ngx_uint_t i, uint64_t prompt, ngx_http_llmroute_want_t *want);


static const char  *ngx_http_llmroute_why[] = {
    "no provider speaks the request's wire format (no translation between "
    "formats)",
    "no catalog model matches the requested model",
    "no model of the requested tier or above is configured",
    "no provider serves the request's region",
    "no model supports the request's tools, images or JSON mode",
    "the prompt and output budget exceed every eligible model's context",
    "every eligible provider is cooling down or at its limit",
    NULL
};


ngx_int_t
ngx_http_llmroute_resolve_model(ngx_http_llmroute_catalog_t *cat,
    ngx_str_t *model, ngx_http_llmroute_want_t *want)
{
    ngx_int_t                   tier;
    ngx_uint_t                  i;
    ngx_http_llmroute_model_t  *m;

    want->pin = NGX_HTTP_LLMROUTE_PIN_NONE;

    if (model->len == 4 && ngx_memcmp(model->data, "auto", 4) == 0) {
        return NGX_OK;
    }

    if (model->len > 5 && ngx_memcmp(model->data, "auto:", 5) == 0) {
        tier = ngx_http_llmroute_tier_by_name(model->data + 5,
                                              model->len - 5);
        if (tier == NGX_ERROR) {
            return NGX_DECLINED;
        }

        want->tier = ngx_max(want->tier, (ngx_uint_t) tier);
        return NGX_OK;
    }

    /* "provider/model" first: catalog ids may contain slashes themselves */

    m = cat->models;

    for (i = 0; i < cat->nmodels; i++) {
        if (cat->providers[m[i].provider].format != want->format) {
            continue;   /* of another format: unknown here */
        }

        if (m[i].full.len == model->len
            && ngx_memcmp(m[i].full.data, model->data, model->len) == 0)
        {
            want->pin = NGX_HTTP_LLMROUTE_PIN_PROVIDER;
            want->pin_id = m[i].id;
            want->pin_provider = m[i].provider;
            return NGX_OK;
        }
    }

    for (i = 0; i < cat->nmodels; i++) {
        if (cat->providers[m[i].provider].format != want->format) {
            continue;
        }

        if (m[i].id.len == model->len
            && ngx_memcmp(m[i].id.data, model->data, model->len) == 0)
        {
            want->pin = NGX_HTTP_LLMROUTE_PIN_MODEL;
            want->pin_id = m[i].id;
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


void
ngx_http_llmroute_select(ngx_http_llmroute_catalog_t *cat,
    ngx_http_llmroute_req_t *req, ngx_http_llmroute_want_t *want,
    ngx_http_llmroute_choice_t *choice)
{
    size_t                         budget, out;
    uint64_t                       cost, rank, best;
    ngx_uint_t                     i, stage, best_stage;
    ngx_http_llmroute_model_t     *m;
    ngx_http_llmroute_provider_t  *p;

    budget = req->max_tokens >= 0
             ? (size_t) req->max_tokens
             : cat->output_budget[ngx_min(want->tier,
                                          NGX_HTTP_LLMROUTE_NTIERS - 1)];

    choice->model = -1;
    choice->est_cost = 0;
    choice->sticky_stage = ngx_http_llmroute_stage_format;
    best = 0;
    choice->output_budget = budget;
    best_stage = ngx_http_llmroute_stage_format;

    /*
     * a session ranks by the answers it gets, not by max_tokens: an agent
     * asks for 32k and gets a few hundred; ranked at the cap, a few per
     * cent on output prices outweighs any re-read (the estimate itself,
     * for budgets and limits, keeps the cap)
     */

    out = (want->output && want->output < budget) ? want->output : budget;

    for (i = 0; i < cat->nmodels; i++) {
        m = &cat->models[i];
        p = &cat->providers[m->provider];
        stage = ngx_http_llmroute_stage_format;

        /* bodies go through as they are: only providers of their format */

        if (p->format != want->format) {
            goto next;
        }

        stage++;

        /* the client's allow-lists (llmroute_client tiers=, models=) */

        if ((want->tiers && !(want->tiers & ((ngx_uint_t) 1 << m->tier)))
            || (want->allowed && !want->allowed[i]))
        {
            goto next;
        }

        if (want->pin != NGX_HTTP_LLMROUTE_PIN_NONE
            && (m->id.len != want->pin_id.len
                || ngx_memcmp(m->id.data, want->pin_id.data, m->id.len) != 0
                || (want->pin == NGX_HTTP_LLMROUTE_PIN_PROVIDER
                    && m->provider != want->pin_provider)))
        {
            goto next;
        }

        stage++;

        /* a pinned model is the client's choice: no tier floor */

        if (want->pin == NGX_HTTP_LLMROUTE_PIN_NONE && m->tier < want->tier) {
            goto next;
        }

        stage++;

        if (p->regions != 0
            && want->region != NGX_HTTP_LLMROUTE_REGION_ANY
            && (want->region == NGX_HTTP_LLMROUTE_REGION_UNKNOWN
                || (p->regions & ((uint64_t) 1 << want->region)) == 0))
        {
            goto next;
        }

        stage++;

        if ((req->ntools && !m->tools)
            || (req->images && !m->vision)
            || (req->json_mode && !m->json))
        {
            goto next;
        }

        stage++;

        if (m->context && req->prompt_tokens + budget > m->context) {
            goto next;
        }

        stage++;

        if (want->exclude & ((uint64_t) 1 << m->provider)) {
            goto next;
        }

        stage++;

        cost = ngx_http_llmroute_prompt_cost(m, i, req->prompt_tokens, want);
        rank = cost + (uint64_t) out * m->output;
        cost += (uint64_t) budget * m->output;

        /*
         * a session's later turns read the prompt from whichever cache
         * this choice makes: ranked over the turns to come, a move pays
         * its re-read back only if it is cheaper for long enough
         */

        if (want->horizon > 1) {
            rank += (uint64_t) (want->horizon - 1)
                    * ((uint64_t) req->prompt_tokens * m->cached_input
                       + (uint64_t) out * m->output);
        }

        /* ties keep the earlier (faster-ranked) model */

        if (choice->model == -1 || rank < best) {
            choice->model = i;
            choice->est_cost = cost;
            best = rank;
        }

    next:

        if (want->sticky == i + 1) {
            choice->sticky_stage = stage;
        }

        best_stage = ngx_max(best_stage, stage);
    }

    choice->why_none = ngx_http_llmroute_why[best_stage];
}


/*
 * The prompt's price on one candidate: what that model holds of the
 * session's prompt (the holder's cache, or a previous holder's that is
 * still alive) at cached_input, the rest at input.  A session on an
 * Anthropic-format model writes the rest into its cache at cache_write;
 * OpenAI-format providers cache for free and bill those tokens at input.
 * Only models of the request's format get here: want->format is theirs.
 */

static uint64_t
ngx_http_llmroute_prompt_cost(ngx_http_llmroute_model_t *m, ngx_uint_t i,
    uint64_t prompt, ngx_http_llmroute_want_t *want)
{
    uint64_t  cached;

    cached = want->cached ? ngx_min(want->cached[i], prompt) : 0;

    return (prompt - cached)
           * ((want->session
               && want->format == NGX_HTTP_LLMROUTE_FORMAT_ANTHROPIC)
              ? m->cache_write : m->input)
           + cached * m->cached_input;
}


uint64_t
ngx_http_llmroute_cost(ngx_http_llmroute_model_t *m, uint64_t prompt,
    uint64_t cached, uint64_t written, uint64_t completion)
{
    uint64_t  a, b, c, w, sum;

    /* prompt counts every input token: cache reads and writes included */

    cached = ngx_min(cached, prompt);
    written = ngx_min(written, prompt - cached);

    /* absurd usage saturates instead of wrapping to a small cost */

    if (__builtin_mul_overflow(prompt - cached - written, m->input, &a)
        || __builtin_mul_overflow(cached, m->cached_input, &b)
        || __builtin_mul_overflow(written, m->cache_write, &w)
        || __builtin_mul_overflow(completion, m->output, &c)
        || __builtin_add_overflow(a, b, &sum)
        || __builtin_add_overflow(sum, w, &sum)
        || __builtin_add_overflow(sum, c, &sum)
        || sum > NGX_HTTP_LLMROUTE_COST_MAX)
    {
        return NGX_HTTP_LLMROUTE_COST_MAX;
    }

    return sum;
}
