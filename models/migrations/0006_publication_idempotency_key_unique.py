from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.migrations.constraints import UniqueConstraint

# Two nodes could store one idempotency key of a channel twice before this
# constraint: the first row stored keeps the key, the later ones lose it (they
# stay as publications). The derived table lets MariaDB update the table it reads.
FORGET_DUPLICATE_KEYS = (
    "UPDATE publications SET idempotency_key = NULL"
    " WHERE idempotency_key IS NOT NULL AND id NOT IN ("
    "SELECT kept FROM (SELECT MIN(id) AS kept FROM publications"
    " WHERE idempotency_key IS NOT NULL GROUP BY channel, idempotency_key) AS first_rows)"
)


class Migration(migrations.Migration):
    dependencies = [('stagewire', '0005_webhooks')]

    initial = False

    operations = [
        ops.RunSQL(FORGET_DUPLICATE_KEYS, reverse_sql=ops.RunSQL.noop),
        ops.RemoveIndex(
            model_name='PublicationRecord',
            name=None,
            fields=['channel', 'idempotency_key'],
        ),
        ops.AddConstraint(
            model_name='PublicationRecord',
            constraint=UniqueConstraint(fields=('channel', 'idempotency_key'), name=None),
        ),
    ]
