"""Issue 10: a checkout may buy seats on an AI plan (``type`` "seats"): the order names the plan and the quantity,
grants no credits, and its seats arrive as an ``entitlements.SeatSubscription`` through Stripe's webhooks."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("entitlements", "0002_seat_budgets"),
        ("payments", "0011_webhook_event_columns"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="order", name="order_type_valid"),
        migrations.RemoveConstraint(model_name="order", name="order_credits_positive"),
        migrations.AddField(
            model_name="order",
            name="ai_plan",
            field=models.ForeignKey(
                blank=True, db_index=False, help_text="The AI plan a seats order buys seats on.", null=True,
                on_delete=django.db.models.deletion.PROTECT, related_name="+", to="entitlements.aiplan",
            ),
        ),
        migrations.AddField(
            model_name="order",
            name="quantity",
            field=models.PositiveIntegerField(blank=True, help_text="The seats a seats order buys.", null=True),
        ),
        migrations.AlterField(
            model_name="order",
            name="type",
            field=models.CharField(
                choices=[("subscription", "Subscription"), ("top_up", "Credit top-up"),
                         ("seats", "Seats on an AI plan")],
                max_length=16,
            ),
        ),
        migrations.AddConstraint(
            model_name="order",
            constraint=models.CheckConstraint(
                condition=models.Q(("type__in", ["subscription", "top_up", "seats"])), name="order_type_valid"
            ),
        ),
        migrations.AddConstraint(
            model_name="order",
            constraint=models.CheckConstraint(
                condition=models.Q(("credits__gt", 0), models.Q(("credits__gte", 0),
                                                                ("type__in", ("subscription", "seats"))),
                                   _connector="OR"),
                name="order_credits_positive",
            ),
        ),
        migrations.AddConstraint(
            model_name="order",
            constraint=models.CheckConstraint(
                condition=models.Q(models.Q(("type", "seats"), _negated=True),
                                   models.Q(("ai_plan__isnull", False), ("credits", 0), ("quantity__gte", 1)),
                                   _connector="OR"),
                name="order_seats_have_plan_and_quantity",
            ),
        ),
    ]
