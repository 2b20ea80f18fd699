"""Configuration of the prompt stage: templates, what goes in, and the token budget."""

from __future__ import annotations

from dataclasses import dataclass

from urllm.configuration import opt


@dataclass
class PromptConfig:
    """Retrieval-augmented, domain-specific prompts (method §3).

    Templates are ``str.format`` strings. ``{domain}`` is the target domain's display name (see
    ``domain_names``), ``{tag}`` an item's dataset domain name (short, it is repeated on every item line),
    ``{n}`` the neighbour's rank (1 = most similar), ``{title}`` an item's catalogue title.
    """

    max_tokens: int = opt(
        896, "budget of the rendered prompt (chat template included) in tokens of the model's tokenizer"
    )
    n_neighbours: int = opt(3, "nearest training users whose items enter the prompt (0 = no retrieval)")
    max_items_per_neighbour: int = opt(
        10, "a neighbour's most recent target-domain items kept (before budgeting)"
    )
    max_other_items_per_neighbour: int = opt(
        3, "a neighbour's most recent other-domain items kept (before budgeting; 0 = none)"
    )
    skip_known_items: bool = opt(
        True, "leave out neighbours' items that are already in the user's own history"
    )
    max_history_items: int = opt(30, "the user's most recent history items kept (before budgeting; 0 = all)")
    min_history_items: int = opt(
        10,
        "the budget cuts the user's history down to this many most recent items before it drops any "
        "neighbour item (then neighbours' items, then the rest of the history)",
    )
    n_candidates: int = opt(
        50, "top-N items of candidates_system stored per record for re-ranking (0 = none)"
    )
    candidates_system: str = opt(
        "graph", "system whose score() ranks the candidates (graph | sasrec | svd ...)"
    )
    candidates_dir: str = opt(
        "",
        "load the fitted candidates system read-only from this folder (like retrieval.encoder_dir)",
        path=True,
    )
    batch_size: int = opt(256, "records scored per call of the candidates system", runtime=True)
    domain_names: dict[str, str] = opt(
        factory=lambda: {"art": "arts and crafts", "office": "office products"},
        help="display name per dataset domain in the text; a domain not listed shows its own name",
    )
    system_prompt: str = opt(
        "You are a recommender system. You answer with the exact title of one product.",
        "system message of the chat template ('' = none: the template's default, if any, applies)",
    )
    instruction: str = opt(
        "Recommend the next {domain} item for this user, based on the items bought by similar users and on "
        "the user's own purchase history.",
        "first paragraph of the user turn; names the target domain",
    )
    neighbours_header: str = opt(
        "Users with similar tastes bought ({domain} items first):", "heading of the similar users' items"
    )
    neighbour_header: str = opt("Similar user {n}:", "heading of one similar user's items")
    history_header: str = opt(
        "This user's purchase history (most recent last):", "heading of the user's items"
    )
    item_line: str = opt("- [{tag}] {title}", "one item: its domain tag and its catalogue title")
    request: str = opt(
        "Recommend a new {domain} item for this user. Answer with its title only.", "last paragraph"
    )
    title_max_words: int = opt(
        0, "titles in prompts are cut to their first N words (their informative head); 0 = whole titles"
    )
    rank_header: str = opt("Candidate {domain} items:", "heading of the listwise candidates (mode rank)")
    rank_line: str = opt("{label}. {title}", "one candidate: its one-token label and its title")
    rank_request: str = opt(
        "Which candidate will this user buy next? Answer with its letter only.",
        "last paragraph of a listwise prompt (replaces request)",
    )
    plain_template: str = opt(
        "{system}\n\n### Instruction:\n{body}\n\n### Response:\n",
        "used when the tokenizer has no chat template or llm.use_chat_template is false",
    )

    def __post_init__(self) -> None:
        if self.max_tokens < 16:
            raise ValueError(f"max_tokens must be >= 16, got {self.max_tokens}")
        for name in (
            "n_neighbours",
            "max_items_per_neighbour",
            "max_other_items_per_neighbour",
            "max_history_items",
            "min_history_items",
            "n_candidates",
            "title_max_words",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        checks = {
            "instruction": {"domain": "x"},
            "neighbours_header": {"domain": "x"},
            "neighbour_header": {"n": 1, "domain": "x"},
            "history_header": {"domain": "x"},
            "item_line": {"tag": "x", "domain": "x", "title": "t"},
            "request": {"domain": "x"},
            "rank_header": {"domain": "x"},
            "rank_line": {"label": "A", "title": "t"},
            "rank_request": {"domain": "x"},
            "plain_template": {"system": "s", "body": "b"},
        }
        for name, fields in checks.items():
            try:
                getattr(self, name).format(**fields)
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(
                    f"{name}: template {getattr(self, name)!r} uses an unknown field or bad braces ({exc}); "
                    f"allowed fields: {', '.join('{' + f + '}' for f in fields)}"
                ) from None
        if "{title}" not in self.item_line:
            raise ValueError("item_line must contain {title}")
        if "{body}" not in self.plain_template:
            raise ValueError("plain_template must contain {body}")
