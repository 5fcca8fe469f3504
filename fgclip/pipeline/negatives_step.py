"""Step 4: fill `regions[].hard_negatives` (10 per region), rule-based unless an LM is named.

With an LM, each region's answer is validated; when fewer than `count` phrases survive, rule-based
negatives fill the rest, and the counts say how often that happened.
"""

from __future__ import annotations

from collections import Counter

from fgclip.data.schema import Record, Region
from fgclip.pipeline.config import ModelLoading, NegativeConfig
from fgclip.pipeline.lm_negatives import LMNegativeWriter, parse_lm_output
from fgclip.pipeline.negatives import RuleNegativeGenerator, object_noun, validate_negatives


class NegativeStep:
    def __init__(self, config: NegativeConfig, device: str = "cpu", loading: ModelLoading | None = None):
        self.config, self.device, self.loading = config, device, loading
        self.rules = RuleNegativeGenerator(config.count, config.seed, config.allow_insertions)
        self.writer: LMNegativeWriter | None = None

    def __call__(self, records: list[Record], counts: Counter) -> list[Record]:
        todo: list[Region] = []
        for record in records:
            for region in record.regions:
                if self.config.overwrite or not region.hard_negatives:
                    todo.append(region)
                else:
                    counts["regions_already_with_negatives"] += 1
        lm_answers: list[str | None] = [None] * len(todo)
        if todo and self.config.model:
            if self.writer is None:
                self.writer = LMNegativeWriter(self.config, self.device, self.loading)
            lm_answers = self.writer.write([(r.caption, object_noun(r.caption) or "") for r in todo])
        for region, answer in zip(todo, lm_answers):
            region.hard_negatives = self._negatives(region.caption, answer, counts)
        return records

    def _negatives(self, expression: str, lm_answer: str | None, counts: Counter) -> list[str]:
        noun = object_noun(expression)
        negatives: list[str] = []
        if lm_answer is not None:
            checked = validate_negatives(expression, parse_lm_output(lm_answer), noun, limit=self.config.count)
            negatives = checked.valid
            counts.update({f"lm_rejected_{reason}": n for reason, n in checked.rejected.items()})
            counts["negatives_from_lm"] += len(negatives)
            if len(negatives) == self.config.count:
                counts["regions_lm_complete"] += 1
            else:
                counts["regions_lm_filled_by_rules"] += 1
        if len(negatives) < self.config.count:
            rule_negatives, inserted = self.rules.generate(expression, noun)
            # Re-validate against what the LM gave, so the union has no duplicates.
            extra = validate_negatives(expression, negatives + rule_negatives, noun, limit=self.config.count).valid
            counts["negatives_from_rules"] += len(extra) - len(negatives)
            counts["negatives_inserted_attribute"] += min(inserted, len(extra) - len(negatives))
            negatives = extra
        counts["regions"] += 1
        counts["negatives"] += len(negatives)
        counts["regions_with_fewer_negatives"] += len(negatives) < self.config.count
        return negatives
