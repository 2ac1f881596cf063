from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('stagewire', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='PublicationRecord',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('channel', fields.CharField(max_length=255)),
                ('epoch', fields.CharField(max_length=64)),
                ('seq', fields.BigIntField()),
                ('data', fields.TextField(unique=False)),
                ('author', fields.CharField(null=True, max_length=64)),
                ('idempotency_key', fields.CharField(null=True, max_length=128)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'publications', 'app': 'stagewire', 'unique_together': (('channel', 'seq'),), 'indexes': [Index(fields=['channel', 'idempotency_key'])], 'pk_attr': 'id', 'table_description': 'Publications of durable namespaces'},
            bases=['Model'],
        ),
    ]
